"""Configuration: defaults, env over default, flag over env, one-line errors naming flag and env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from streamtrain import cli
from streamtrain.service import config
from streamtrain.service.config import (
    BrokerSettings,
    CommonSettings,
    ConfigError,
    DemoSettings,
    EvaluatorSettings,
    ProducerSettings,
    TrainerSettings,
)
from tests.conftest import TFIO_MISSING

SECRET = "hunter2-Zq9"  # a SASL password that must never be echoed

ALL_SETTINGS: list[type[BaseSettings]] = [
    CommonSettings, ProducerSettings, TrainerSettings, EvaluatorSettings, BrokerSettings, DemoSettings,
    cli.TopicsSettings, cli.InspectSettings,
]


def parse(*argv: str) -> Any:
    return cli.parser().parse_args(list(argv))


# --- defaults and precedence -------------------------------------------------------------------------------


def test_defaults_of_each_component() -> None:
    trainer = config.load(TrainerSettings)
    assert trainer.bootstrap_servers == "127.0.0.1:9092"
    assert trainer.security_protocol == "PLAINTEXT"
    assert trainer.train_topic == "streamtrain.train"
    assert (trainer.batch_size, trainer.min_batch_size, trainer.max_batch_size) == ("auto", 16, 1024)
    assert trainer.model == "mlp"
    assert trainer.http_port == 9102
    assert trainer.publish_every_seconds == 10.0
    assert trainer.checkpoint_dir == Path("checkpoints")
    assert trainer.sasl_password is None

    producer = config.load(ProducerSettings)
    assert producer.source == "susy"
    assert producer.test_fraction == pytest.approx(0.2)
    assert producer.drift_points == []
    assert producer.http_port == 9101

    evaluator = config.load(EvaluatorSettings)
    assert evaluator.batch_size == 1024  # the evaluator overrides the consumer default
    assert evaluator.window == 2000
    assert evaluator.http_port == 9103


def test_env_var_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTRAIN_BATCH_SIZE", "7")
    monkeypatch.setenv("STREAMTRAIN_MODEL", "logreg")
    monkeypatch.setenv("STREAMTRAIN_SSL_ENDPOINT_IDENTIFICATION", "false")
    monkeypatch.setenv("STREAMTRAIN_DRIFT_POINTS", "100, 250")
    trainer = config.load(TrainerSettings)
    assert (trainer.batch_size, trainer.model, trainer.ssl_endpoint_identification) == (7, "logreg", False)
    assert config.load(ProducerSettings).drift_points == [100, 250]


def test_cli_flag_overrides_env_and_env_fills_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTRAIN_BATCH_SIZE", "7")
    monkeypatch.setenv("STREAMTRAIN_MODEL", "logreg")
    args = parse("train", "--batch-size", "9", "--no-ssl-endpoint-identification")
    trainer = config.load(TrainerSettings, args)
    assert trainer.batch_size == 9  # flag beats env
    assert trainer.model == "logreg"  # env still applies where no flag was given
    assert trainer.ssl_endpoint_identification is False
    assert trainer.learning_rate == "auto" and trainer.base_learning_rate() == pytest.approx(1e-2)  # default: logreg's


def test_cli_list_flag_and_broker_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse("produce", "--source", "drift", "--drift-points", "10,20,30")
    producer = config.load(ProducerSettings, args)
    assert (producer.source, producer.drift_points) == ("drift", [10, 20, 30])
    monkeypatch.setenv("STREAMTRAIN_BROKER_PORT", "19092")
    monkeypatch.setenv("STREAMTRAIN_PORT", "1")  # not the broker's variable
    broker = config.load(BrokerSettings, parse("broker", "--topics", "a,b"))
    assert (broker.port, broker.topics) == (19092, ["a", "b"])


# --- invalid values ----------------------------------------------------------------------------------------

# (settings class, given values, field named in the error, a fragment of the reason);
# "{file}" stands for an existing file.
INVALID: list[tuple[type[BaseSettings], dict[str, Any], str, str]] = [
    (ProducerSettings, {"rate": "-1"}, "rate", "greater than or equal to 0"),
    (TrainerSettings, {"batch_size": "0"}, "batch_size", "expected auto or a number of records from 1"),
    (TrainerSettings, {"batch_size": "fast"}, "batch_size", "expected auto or a number of records, got 'fast'"),
    (TrainerSettings, {"min_batch_size": "64", "max_batch_size": "32"}, "min_batch_size",
     "64 is above --max-batch-size 32"),
    (EvaluatorSettings, {"batch_size": "abc"}, "batch_size", "valid integer"),
    (ProducerSettings, {"test_fraction": "1.0"}, "test_fraction", "less than 1"),
    (TrainerSettings, {"bootstrap_servers": "nope"}, "bootstrap_servers", "host:port"),
    (TrainerSettings, {"bootstrap_servers": "a:1,b:99999"}, "bootstrap_servers", "host:port"),
    (TrainerSettings, {"train_topic": "a b"}, "train_topic", "topic name"),
    (EvaluatorSettings, {"dead_letter_topic": "x" * 250}, "dead_letter_topic", "topic name"),
    (ProducerSettings, {"source": "kafka"}, "source", "'csv'"),
    (ProducerSettings, {"source": "csv"}, "csv_path", "required"),
    (ProducerSettings, {"csv_path": "/nonexistent/data.csv"}, "csv_path", "no such file"),
    (TrainerSettings, {"ssl_ca_location": "/nonexistent/ca.pem"}, "ssl_ca_location", "no such file"),
    (TrainerSettings, {"sasl_password_file": "/nonexistent/pw"}, "sasl_password_file", "no such file"),
    (TrainerSettings, {"security_protocol": "SASL_SSL", "sasl_password": SECRET},
     "sasl_username", "required"),
    (TrainerSettings, {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},
     "sasl_password", "--sasl-"),
    (TrainerSettings, {"ssl_certificate_location": "{file}"}, "ssl_key_location", "together"),
    (TrainerSettings, {"ssl_key_location": "{file}"}, "ssl_key_location", "together"),
    (TrainerSettings, {"model": "resnet"}, "model", "expected mlp"),
    (TrainerSettings, {"model": "/nonexistent/m.keras"}, "model", "no such model file"),
    (TrainerSettings, {"model_name": "a/b"}, "model_name", "letters"),
    (TrainerSettings, {"categorical_columns": "3"}, "categorical_columns", "COLUMN:CATEGORIES pairs"),
    (TrainerSettings, {"categorical_columns": "3:5,x:2"}, "categorical_columns", "got 'x:2'"),
    (TrainerSettings, {"categorical_columns": "-1:5"}, "categorical_columns", "COLUMN:CATEGORIES pairs"),
    (TrainerSettings, {"categorical_columns": "3:1"}, "categorical_columns", "must be 2 to 100000"),
    (TrainerSettings, {"categorical_columns": "3:5,3:6"}, "categorical_columns", "declared twice"),
    (TrainerSettings, {"categorical_columns": "2:5,6:3", "n_features": "6"}, "categorical_columns",
     "column 6 is beyond the 6 features"),
    (ProducerSettings, {"drift_points": "10,x"}, "drift_points", "expected comma-separated integers"),
    (ProducerSettings, {"drift_points": "200,100"}, "drift_points", "increasing"),
    (ProducerSettings, {"drift_points": "0,100"}, "drift_points", "increasing"),
    (ProducerSettings, {"drift_points": "100,100"}, "drift_points", "increasing"),
    (TrainerSettings, {"publish_every_batches": "0", "publish_every_seconds": "0"}, "publish_every_seconds",
     "nothing is published"),
    (TrainerSettings, {"learning_rate": "0"}, "learning_rate", "expected auto or a number above 0 and at most 10"),
    (TrainerSettings, {"learning_rate": "fast"}, "learning_rate", "expected auto or a number, got 'fast'"),
    (TrainerSettings, {"http_port": "65536"}, "http_port", "less than or equal to 65535"),
    (EvaluatorSettings, {"window": "5"}, "window", "greater than or equal to 10"),
    (ProducerSettings, {"n_features": "0"}, "n_features", "greater than or equal to 1"),
    (BrokerSettings, {"port": "70000"}, "port", "less than or equal to 65535"),
]


def _materialise(values: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    existing = tmp_path / "client.pem"
    existing.write_text("-----BEGIN CERTIFICATE-----\n")
    return {k: str(existing) if v == "{file}" else v for k, v in values.items()}


@pytest.mark.parametrize(("settings_cls", "values", "field", "reason"), INVALID,
                         ids=[f"{c.__name__}-{'-'.join(v)}-{f}" for c, v, f, _ in INVALID])
def test_invalid_value_raises_one_line_naming_flag_and_env(
        settings_cls: type[BaseSettings], values: dict[str, Any], field: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(settings_cls, _materialise(values, tmp_path))
    message = str(caught.value)
    prefix = settings_cls.model_config.get("env_prefix", "")
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{config.flag_name(field)} ({prefix}{field.upper()}): "), message
    assert reason in message
    assert SECRET not in message


def test_categorical_columns_parse_and_reach_the_trainer_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.parse_categorical_columns("") == {}
    assert config.parse_categorical_columns(" 5:9, 3:5,4:21 ") == {3: 5, 4: 21, 5: 9}
    monkeypatch.setenv("STREAMTRAIN_CATEGORICAL_COLUMNS", "3:5,4:21")
    assert config.load(TrainerSettings, {"n_features": "5"}).categorical_columns == "3:5,4:21"
    assert config.load(TrainerSettings).categorical_columns == "3:5,4:21"  # width unknown: checked at the data


def test_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 12


@pytest.mark.parametrize(("env", "value", "field"), [
    ("STREAMTRAIN_BATCH_SIZE", "0", "batch_size"),
    ("STREAMTRAIN_TRAIN_TOPIC", "a b", "train_topic"),
    ("STREAMTRAIN_PUBLISH_EVERY_SECONDS", "0", "publish_every_seconds"),
])
def test_invalid_env_value_names_flag_and_env(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                              field: str) -> None:
    monkeypatch.setenv(env, value)
    if field == "publish_every_seconds":
        monkeypatch.setenv("STREAMTRAIN_PUBLISH_EVERY_BATCHES", "0")
    with pytest.raises(ConfigError, match=rf"^{config.flag_name(field)} \({env}\): "):
        config.load(TrainerSettings)


def test_valid_cert_and_key_pair_and_sasl_are_accepted(tmp_path: Path) -> None:
    cert, key, pw = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "pw"
    for f in (cert, key):
        f.write_text("pem")
    pw.write_text(f"{SECRET}\n")
    s = config.load(TrainerSettings, {"ssl_certificate_location": str(cert), "ssl_key_location": str(key),
                                      "security_protocol": "SASL_SSL", "sasl_username": "u",
                                      "sasl_password_file": str(pw)})
    assert s.sasl_secret() == SECRET
    assert SECRET not in repr(s)


@pytest.mark.parametrize("values", [
    {"security_protocol": "SASL_SSL", "sasl_password": SECRET},  # no user name
    {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": SECRET, "batch_size": "0"},
    {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": [SECRET]},  # wrong type
    {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": SECRET, "model": "resnet"},
    {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": SECRET, "http_port": "-1"},
    {"security_protocol": "SASL_SSL", "sasl_password": SECRET, "sasl_password_file": "/nonexistent/pw"},
])
def test_sasl_password_never_in_error(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(TrainerSettings, values)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained pydantic dump


def test_sasl_password_never_on_stderr(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMTRAIN_SASL_PASSWORD", SECRET)
    code = cli.main(["train", "--security-protocol", "SASL_SSL", "--batch-size", "0"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_CONFIG
    assert SECRET not in out + err
    assert err.count("\n") == 1 and "--batch-size" in err


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
    # An unroutable address: a component that tried to connect would hang, not exit at once.
    env["STREAMTRAIN_BOOTSTRAP_SERVERS"] = "10.255.255.1:9092"
    return env


def test_cli_bad_value_exits_2_with_one_stderr_line_before_connecting() -> None:
    # The broker address is unroutable: a component that tried to connect would hang into the timeout.
    done = subprocess.run([sys.executable, "-m", "streamtrain", "train", "--batch-size", "0"],
                          capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "--batch-size" in lines[0] and "STREAMTRAIN_BATCH_SIZE" in lines[0]
    assert lines[0].startswith("streamtrain train: error: ")
    assert done.stdout == ""


@pytest.mark.skipif(not TFIO_MISSING, reason="tensorflow-io is installed here")
@pytest.mark.parametrize("component", ["train", "evaluate"])
def test_tensorflow_io_ingest_without_the_extra_fails_naming_it(component: str) -> None:
    done = subprocess.run([sys.executable, "-m", "streamtrain", component, "--ingest", "tensorflow-io"],
                          capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "--ingest (STREAMTRAIN_INGEST)" in lines[0] and "pip install 'streamtrain[tfio]'" in lines[0]


@pytest.mark.tfio
def test_tensorflow_io_ingest_is_accepted_with_the_extra() -> None:
    assert config.load(config.TrainerSettings, {"ingest": "tensorflow-io"}).ingest == "tensorflow-io"


@pytest.mark.parametrize("argv", [["train", "--no-such-flag", "1"], ["produce", "--source", "nope"]])
def test_cli_usage_error_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert argv[1] in err


# --- env names and help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_cls", ALL_SETTINGS, ids=lambda c: c.__name__)
def test_env_names_cover_every_field(settings_cls: type[BaseSettings]) -> None:
    names = config.env_names(settings_cls)
    prefix = settings_cls.model_config.get("env_prefix", "")
    assert prefix.startswith("STREAMTRAIN_")
    assert len(names) == len(settings_cls.model_fields)
    assert names == {f"{prefix}{field.upper()}" for field in settings_cls.model_fields}
    assert all(n.startswith("STREAMTRAIN_") and n == n.upper() for n in names)


def test_env_names_include_known_variables() -> None:
    assert {"STREAMTRAIN_BATCH_SIZE", "STREAMTRAIN_SASL_PASSWORD_FILE", "STREAMTRAIN_MODEL_DIR"} <= \
        config.env_names(TrainerSettings)
    assert "STREAMTRAIN_BROKER_PORT" in config.env_names(BrokerSettings)
    assert "STREAMTRAIN_DEMO_WORKDIR" in config.env_names(DemoSettings)


@pytest.mark.parametrize("settings_cls", ALL_SETTINGS, ids=lambda c: c.__name__)
def test_every_field_has_a_description(settings_cls: type[BaseSettings]) -> None:
    missing = [name for name, info in settings_cls.model_fields.items()
               if not (info.description or "").strip()]
    assert missing == []


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_lists_every_flag_with_its_env(command: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping inside the help lines
    with pytest.raises(SystemExit) as caught:
        cli.parser().parse_args([command, "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    settings_cls = cli.COMMANDS[command][0]
    prefix = settings_cls.model_config.get("env_prefix", "")
    for name, info in settings_cls.model_fields.items():
        assert (name.upper() if config.positional(info) else config.flag_name(name)) in text
        assert f"[env {prefix}{name.upper()}; default " in text
        assert str(info.description).split(" (")[0][:30] in text


def test_flag_and_env_name_helpers() -> None:
    assert config.flag_name("batch_max_wait_ms") == "--batch-max-wait-ms"
    assert config.env_name("batch_max_wait_ms") == "STREAMTRAIN_BATCH_MAX_WAIT_MS"

"""Typed configuration for every component: each option is a CLI flag and an environment variable.

The settings classes are the single definition of what a component reads. The CLI is generated
from them (``--batch-size`` for ``batch_size``), and so are the env names (``STREAMTRAIN_BATCH_SIZE``);
the Helm chart's tests compare the env vars it sets against :func:`env_names`.
Validation happens here, before any component connects to anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "STREAMTRAIN_"
_MODULE_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ConfigError(ValueError):
    """An invalid option; the message is one line naming the flag and its env variable."""


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class CommonSettings(BaseSettings):
    """Options every component shares: Kafka connection, topic names, logging, HTTP endpoint."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,...]")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    ssl_ca_location: Path | None = Field(None, description="CA certificate (PEM) that signed the brokers' certificates")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM) for mutual TLS")
    ssl_key_location: Path | None = Field(None, description="client private key (PEM) for mutual TLS")
    ssl_endpoint_identification: bool = Field(
        True, description="verify that the broker certificate matches its host name"
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (prefer --sasl-password-file)")
    sasl_password_file: Path | None = Field(None, description="file holding the SASL password (a mounted Secret)")
    client_id: str | None = Field(None, description="Kafka client.id (default: streamtrain-<component>)")

    train_topic: str = Field("streamtrain.train", description="topic of training records")
    test_topic: str = Field("streamtrain.test", description="topic of held-out test records")
    metrics_topic: str = Field("streamtrain.metrics", description="topic the components publish metrics to")
    model_events_topic: str = Field("streamtrain.model-events", description="topic announcing new model versions")
    dead_letter_topic: str = Field("streamtrain.dead-letter", description="topic for records that cannot be used")
    control_topic: str = Field(
        "streamtrain.control", description="compacted topic of serving decisions: promotions, rejections, pins"
    )
    model_files_topic: str = Field(
        "streamtrain.model-files", description="compacted topic the trainer ships versions on (--ship-versions) for "
        "readers with --model-source kafka"
    )
    input_topic: str = Field("streamtrain.input", description="topic of feature rows the predictor scores")
    output_topic: str = Field("streamtrain.predictions", description="topic the predictor writes predictions to")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="log format; auto = text on a terminal, JSON otherwise"
    )
    http_host: str = Field("0.0.0.0", description="address of the /metrics, /healthz and /readyz endpoint")
    http_port: int = Field(0, ge=0, le=65535, description="port of the HTTP endpoint; 0 disables it")
    summary_file: Path | None = Field(None, description="write a JSON summary of the run here on exit")
    broker_check_seconds: float = Field(
        2.0, gt=0, le=3600, description="seconds between checks that the Kafka cluster answers (stall detection)"
    )
    broker_stall_seconds: float = Field(
        5.0, gt=0, le=3600, description="a metadata request unanswered this long counts as a broker stall"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator(
        "train_topic", "test_topic", "metrics_topic", "model_events_topic", "dead_letter_topic", "control_topic",
        "model_files_topic", "input_topic", "output_topic",
    )
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value):
            raise ValueError(f"not a valid Kafka topic name: {value!r}")
        return value

    @field_validator("ssl_ca_location", "ssl_certificate_location", "ssl_key_location", "sasl_password_file")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> CommonSettings:
        if self.security_protocol.startswith("SASL"):
            if not self.sasl_username:
                raise _field_error("sasl_username", f"required when security protocol is {self.security_protocol}")
            if self.sasl_password is None and self.sasl_password_file is None:
                raise _field_error("sasl_password", "set --sasl-password or --sasl-password-file")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise _field_error("ssl_key_location", "the client certificate and key go together")
        return self

    def sasl_secret(self) -> str | None:
        if self.sasl_password_file is not None:
            return self.sasl_password_file.read_text().strip()
        return self.sasl_password.get_secret_value() if self.sasl_password else None


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_error(field: str, message: str) -> _FieldError:
    return _FieldError(field, message)


Source = Literal["csv", "breast-cancer", "susy", "drift"]
# The producer also has the drift-stream generators of the literature (producer/generators/).
ProducerSource = Literal["csv", "breast-cancer", "susy", "drift", "agrawal", "sea", "hyperplane"]
# Fixed widths of the generators that have one (--n-features sets the others').
FIXED_FEATURES = {"agrawal": 9, "sea": 3}


def _int_list(value: Any) -> Any:
    """A comma-separated list of integers from a flag or env variable ('' is none)."""
    if isinstance(value, str):
        try:
            return [int(p) for p in value.split(",") if p.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated integers, got {value!r}") from None
    return value


class ProducerSettings(CommonSettings):
    """Producer: streams a source into the train and test topics."""

    http_port: int = Field(9101, ge=0, le=65535, description="port of the HTTP endpoint; 0 disables it")
    source: ProducerSource = Field(
        "susy", description="record source: csv, breast-cancer, or a generator: susy, drift, agrawal (Agrawal et al. "
        "1993), sea (Street and Kim 2001) or hyperplane (the rotating hyperplane of Hulten et al. 2001)"
    )
    csv_path: Path | None = Field(None, description="CSV file (plain or .gz) for --source csv")
    csv_label_column: int = Field(0, description="index of the label column in the CSV (negative counts from the end)")
    csv_header: Literal["auto", "yes", "no"] = Field("auto", description="whether the CSV starts with a header row")
    count: int = Field(0, ge=0, description="records to produce; 0 = the whole source (endless for generators)")
    passes: int = Field(1, ge=0, description="passes over a finite source (csv, breast-cancer); 0 = repeat forever")
    rate: float = Field(0.0, ge=0, description="records per second; 0 = as fast as possible")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="fraction of records sent to the test topic")
    seed: int = Field(42, description="seed for generators, shuffling and the train/test split")
    n_features: int | None = Field(
        None, ge=1, le=10_000, description="features of the generators (susy: 18, drift and hyperplane: 10; agrawal "
        "has 9 and sea 3)"
    )
    drift_type: Literal["abrupt", "gradual"] = Field("abrupt", description="how the drift generator changes concept")
    drift_points: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="record indices where the drift generator changes concept, comma-separated"
    )
    drift_width: int = Field(2000, ge=1, description="records over which a gradual drift blends the concepts")
    noise: float | None = Field(
        None, ge=0, le=1, description="share of records whose label a generator flips (class noise; default: drift "
        "0.02, sea 0.1, hyperplane 0.05, agrawal 0)"
    )
    agrawal_functions: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [0], description="agrawal: classification function (0-9) of each concept, "
        "comma-separated: the first before the first of --drift-points, the next from it on, ..."
    )
    agrawal_perturbation: float = Field(
        0.0, ge=0, le=1, description="agrawal: feature noise; each numeric attribute moves by up to this share of its "
        "range after labelling"
    )
    sea_variants: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [0], description="sea: variant (0-3: thresholds 8, 9, 7, 9.5) of each concept, "
        "comma-separated, one more than --drift-points"
    )
    hyperplane_mag_change: float = Field(
        0.001, ge=0, le=1, description="hyperplane: how far each drifting weight moves per record"
    )
    hyperplane_sigma: float = Field(
        0.1, ge=0, le=1, description="hyperplane: probability per record that a drifting weight reverses direction"
    )
    hyperplane_drift_features: int = Field(
        2, ge=0, le=10_000, description="hyperplane: weights that rotate (the first ones); at drift points all of "
        "them take a fresh draw"
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field("lz4", description="Kafka compression codec")
    wire_format: Literal["csv", "f32", "f32-block"] = Field(
        "csv", description="record value format: csv (the tutorial's text rows; tensorflow-io readers need it), "
        "f32 (little-endian float32 with the header streamtrain.format=f32: far cheaper to encode and decode) or "
        "f32-block (--block-rows rows of float32 per record: the cheapest to consume at high rates; a bad row "
        "dead-letters its whole block)",
    )
    block_rows: int = Field(
        256, ge=1, le=16_384, description="rows per record with --wire-format f32-block (capped at 512 KiB a record)"
    )
    log_every_seconds: float = Field(5.0, gt=0, description="seconds between progress log lines (no terminal)")

    @field_validator("drift_points", "agrawal_functions", "sea_variants", mode="before")
    @classmethod
    def _split_points(cls, value: Any) -> Any:
        return _int_list(value)

    @field_validator("agrawal_functions", "sea_variants")
    @classmethod
    def _check_concepts(cls, value: list[int], info: ValidationInfo) -> list[int]:
        top = 9 if info.field_name == "agrawal_functions" else 3
        if not value or any(not 0 <= v <= top for v in value):
            raise ValueError(f"expected numbers from 0 to {top}, one per concept, got {value}")
        return value

    @field_validator("drift_points")
    @classmethod
    def _check_points(cls, value: list[int]) -> list[int]:
        if any(p <= 0 for p in value) or value != sorted(set(value)):
            raise ValueError("must be increasing positive record indices")
        return value

    @model_validator(mode="after")
    def _check_source(self) -> ProducerSettings:
        if self.source == "csv" and self.csv_path is None:
            raise _field_error("csv_path", "required with --source csv")
        if self.csv_path is not None and not self.csv_path.is_file():
            raise _field_error("csv_path", f"no such file: {self.csv_path}")
        concepts = len(self.drift_points) + 1
        for source, name in (("agrawal", "agrawal_functions"), ("sea", "sea_variants")):
            given = getattr(self, name)
            if self.source == source and len(given) != concepts:
                points = f"{concepts - 1} drift point{'s make' if concepts != 2 else ' makes'}"
                raise _field_error(name, f"one per concept: {points} {concepts} concepts, got {len(given)} "
                                         f"({','.join(map(str, given))})")
        fixed = FIXED_FEATURES.get(self.source)
        if fixed is not None and self.n_features not in (None, fixed):
            raise _field_error("n_features", f"{self.source} has {fixed} features, got {self.n_features}")
        if self.source == "hyperplane" and self.hyperplane_drift_features > (self.n_features or 10):
            raise _field_error("hyperplane_drift_features", f"{self.hyperplane_drift_features} is more than the "
                                                            f"{self.n_features or 10} features (--n-features)")
        return self


class ConsumerSettings(CommonSettings):
    """Options shared by the two consuming components."""

    model_dir: Path = Field(Path("models"), description="base directory of the model store (the shared volume)")
    model_name: str = Field("streamtrain", description="model name; versions live in <model-dir>/<model-name>/<n>/")
    batch_size: int = Field(256, ge=1, le=1_000_000, description="records per micro-batch")
    batch_max_wait_ms: int = Field(500, ge=1, description="longest wait to fill a micro-batch, in ms")
    start_offset: Literal["earliest", "latest"] = Field(
        "earliest", description="where to start when there is no checkpoint or committed offset"
    )
    max_records: int = Field(0, ge=0, description="stop after this many records; 0 = run forever")
    idle_exit_seconds: float = Field(0.0, ge=0, description="exit after this long without records; 0 = never")
    metrics_every_seconds: float = Field(2.0, gt=0, description="seconds between metric messages")
    ingest: Literal["confluent", "tensorflow-io"] = Field(
        "confluent", description="Kafka reader: confluent (default, exact offsets) or tensorflow-io (tutorial-style)"
    )

    def read_size(self) -> int:
        """Records the reader fetches at once."""
        return self.batch_size

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", value):
            raise ValueError(f"use letters, digits, '-' or '_': {value!r}")
        return value

    @field_validator("ingest")
    @classmethod
    def _check_ingest(cls, value: str) -> str:
        # An optional extra: say how to get it here, before anything connects, not at the first batch.
        if value == "tensorflow-io" and importlib.util.find_spec("tensorflow_io") is None:
            raise ValueError("tensorflow-io is not installed: pip install 'streamtrain[tfio]' (it brings TensorFlow "
                             "2.16; Python 3.11 or 3.12), or run the image's <tag>-tfio variant")
        return value


def _auto_or(value: Any, number: Callable[[Any], float], what: str, bounds: str,
             within: Callable[[float], bool]) -> float | str:
    """An option that is "auto" or a number `within` bounds, with one message for either mistake."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        parsed = number(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected auto or {what}, got {value!r}") from None
    if not within(parsed):
        raise ValueError(f"expected auto or {what} {bounds}, got {parsed}")
    return parsed


# The trainer's records per optimizer step: auto (trainer/pace.py) or a fixed number.
StepSize = Annotated[int | Literal["auto"], BeforeValidator(
    lambda v: _auto_or(v, int, "a number of records", "from 1 to 1000000", lambda n: 1 <= n <= 1_000_000))]

# --learning-rate auto, per model (measured: docs/quality.md); models of the user's get Adam's usual 0.001.
LEARNING_RATES = {"mlp": 1e-3, "logreg": 1e-2}

LearningRate = Annotated[float | Literal["auto"], BeforeValidator(
    lambda v: _auto_or(v, float, "a number", "above 0 and at most 10", lambda n: 0 < n <= 10))]


# Where an evaluator's or predictor's versions come from (store/shipping.py).
ModelSource = Annotated[Literal["volume", "kafka"], Field(
    description="where versions come from: volume (--model-dir is the trainer's model store) or kafka (received "
    "from the model-files topic into --model-dir, a local directory)")]


def parse_class_weight(spec: str) -> dict[int, float] | str | None:
    """--class-weight: 'none' -> None; 'balanced' -> 'balanced'; '0:1,1:5' -> {0: 1.0, 1: 5.0}."""
    spec = spec.strip().lower()
    if spec in ("", "none"):
        return None
    if spec == "balanced":
        return "balanced"
    weights: dict[int, float] = {}
    for part in spec.split(","):
        label, sep, value = part.partition(":")
        try:
            key, weight = int(label), float(value)
        except ValueError:
            key, weight = -1, -1.0
        if not sep or key not in (0, 1) or not 0 <= weight < float("inf"):
            raise ValueError(f"expected none, balanced or label:weight pairs with labels 0/1 and weights >= 0 "
                             f"(like 0:1,1:5), got {spec!r}")
        weights[key] = weight
    return weights


MAX_CATEGORIES = 100_000  # per column; above 100 a column is embedded (models.py), so this bounds its table


def parse_categorical_columns(spec: str) -> dict[int, int]:
    """--categorical-columns: '' -> {}; '3:5,4:21' -> {3: 5, 4: 21} (feature column: number of categories)."""
    out: dict[int, int] = {}
    for part in spec.replace(" ", "").split(",") if spec.strip() else []:
        column, sep, count = part.partition(":")
        if not (sep and column.isdecimal() and count.isdecimal()):
            raise ValueError(f"expected COLUMN:CATEGORIES pairs like 3:5,4:21 (0-based feature columns, the label "
                             f"excluded), got {part!r}")
        if int(column) in out:
            raise ValueError(f"column {int(column)} is declared twice")
        if not 2 <= int(count) <= MAX_CATEGORIES:
            raise ValueError(f"column {int(column)}: the number of categories must be 2 to {MAX_CATEGORIES}, "
                             f"got {int(count)}")
        out[int(column)] = int(count)
    return out


class TrainerSettings(ConsumerSettings):
    """Online trainer: test-then-train on the train topic, checkpoints, publishes versions."""

    http_port: int = Field(9102, ge=0, le=65535, description="port of the HTTP endpoint; 0 disables it")
    group_id: str = Field("streamtrain-trainer", description="group whose committed offsets show the trainer's lag")
    model: str = Field("mlp", description="mlp, logreg, a saved .keras file, or a module:function factory")
    categorical_columns: str = Field(
        "", description="feature columns holding category codes, COLUMN:CATEGORIES[,...] like 3:5,4:21 (0-based, the "
        "label excluded; codes 0 to CATEGORIES-1, any other value is one extra 'other' category); the model one-hot "
        "encodes them (an 8-wide learnt embedding above 100 categories) and standardizes only the other columns",
    )
    n_features: int | None = Field(None, ge=1, le=10_000, description="input width; default: taken from the data")
    # "auto" or a number: the consumers' plain int is narrower (the reader's fetch size is read_size()).
    batch_size: StepSize = Field(  # type: ignore[assignment]
        "auto", description="records per optimizer step: auto takes the smallest steps between --min-batch-size "
        "and --max-batch-size that keep up with the stream and clear a backlog within --catch-up-seconds (measured "
        "as the trainer goes); a number fixes it",
    )
    catch_up_seconds: float = Field(
        30.0, gt=0, le=86_400, description="with --batch-size auto: time the trainer gives itself to clear a backlog "
        "(a restart, a pre-filled topic) before it takes larger, faster steps that learn less from each record",
    )
    min_batch_size: int = Field(16, ge=1, le=1_000_000, description="smallest step of --batch-size auto, in records")
    max_batch_size: int = Field(
        1024, ge=1, le=1_000_000, description="largest step of --batch-size auto, and the records fetched at once"
    )
    learning_rate: LearningRate = Field(
        "auto", description="optimizer (Adam) learning rate: auto (per model: mlp 0.001, logreg 0.01, other models "
        "0.001, for steps of 16 records, times the square root of a larger step's growth) or a number (every step)"
    )
    seed: int = Field(0, description="seed of the model's initial weights")
    checkpoint_dir: Path = Field(Path("checkpoints"), description="where checkpoints (weights, optimizer, offsets) go")
    checkpoint_every_seconds: float = Field(5.0, gt=0, description="seconds between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints to keep")
    publish_every_batches: int = Field(0, ge=0, description="publish a model version every N batches; 0 = off")
    publish_every_seconds: float = Field(10.0, ge=0, description="publish a model version every T seconds; 0 = off")
    keep_versions: int = Field(5, ge=1, description="published versions to keep in the model store")
    ship_versions: bool = Field(
        False, description="also ship every version (and every removal) on the model-files topic, for evaluators and "
        "predictors on other nodes (--model-source kafka)"
    )
    keep_promoted_versions: int = Field(
        3, ge=0, description="promoted versions kept beyond --keep-versions (with the pinned one), for serving and "
        "rollback; read from the control topic"
    )
    savedmodel_every_seconds: float = Field(
        0.0, ge=0, description="write the SavedModel (TF Serving's format, ~0.2 s or more) into a version at most "
        "every T seconds; versions in between hold only model.keras (~0.03 s), which the evaluator loads; the "
        "first and the final version always have it; 0 = every version",
    )
    on_offset_loss: Literal["fail", "restart-from-earliest"] = Field(
        "fail",
        description="when checkpointed offsets no longer exist on the broker: fail (exit 3), or keep the model "
        "and continue from the earliest offset",
    )
    stop_grace_seconds: float = Field(
        25.0, gt=0, description="time allowed to finish the batch and checkpoint on SIGTERM"
    )
    lock_wait_seconds: float = Field(
        30.0, ge=0, description="how long to wait for another trainer to release the checkpoint and model "
        "directories (one trainer per model store) before exiting with code 4"
    )
    # Tracking a changing stream (trainer/adapt.py): drift detection and reactions, replay, class weights.
    drift_detector: Literal["adwin", "page-hinkley", "none"] = Field(
        "adwin", description="drift detector on the prequential error stream: adwin, page-hinkley or none"
    )
    drift_reaction: Literal["none", "boost-lr", "reset-optimizer", "reinit-output"] = Field(
        "reinit-output", description="what a detected drift does: none (report only), boost-lr (raise the "
        "learning rate for --drift-boost-batches), reset-optimizer (zero its state) or reinit-output "
        "(re-initialise the output layer)",
    )
    drift_delta: float = Field(
        0.002, gt=0, lt=1, description="ADWIN confidence: smaller means fewer false alarms and later detection"
    )
    drift_threshold: float = Field(80.0, gt=0, description="Page-Hinkley alarm threshold (lambda), in errors")
    drift_min_change: float = Field(0.02, ge=0, description="Page-Hinkley tolerated error increase (delta)")
    drift_warmup_records: int = Field(1000, ge=0, description="records trained before drifts are reported")
    drift_cooldown_records: int = Field(1000, ge=0, description="records after a drift before the next is reported")
    drift_lr_boost: float = Field(10.0, gt=1, le=1000, description="learning-rate factor of the boost-lr reaction")
    drift_boost_batches: int = Field(50, ge=1, description="batches the boost-lr reaction lasts")
    rehearsal_steps: int = Field(
        7, ge=0, le=100, description="with --batch-size auto: up to this many extra optimizer steps per step, on "
        "records drawn from the last --rehearsal-records, taken at the smallest steps in the time the stream leaves "
        "(no batch waiting, or speed to spare over --catch-up-seconds); 0 = none"
    )
    rehearsal_records: int = Field(
        1000, ge=1, le=10_000_000, description="recent records the rehearsal steps draw from (emptied at a drift)"
    )
    replay_size: int = Field(0, ge=0, le=10_000_000, description="records kept for replay; 0 = no replay")
    replay_ratio: float = Field(
        0.25, ge=0, lt=1, description="share of each training batch drawn from the replay buffer"
    )
    class_weight: str = Field(
        "none", description="class weights: none, balanced (running estimate) or label:weight pairs like 0:1,1:5"
    )
    trace_file: Path | None = Field(
        None, description="append a CSV line per batch (position, errors, loss, drift, each record's error)"
    )

    @field_validator("class_weight")
    @classmethod
    def _check_class_weight(cls, value: str) -> str:
        parse_class_weight(value)
        return value

    @field_validator("categorical_columns")
    @classmethod
    def _check_categorical_columns(cls, value: str) -> str:
        parse_categorical_columns(value)
        return value

    @model_validator(mode="after")
    def _check_categorical_width(self) -> TrainerSettings:
        # Known now only with --n-features; otherwise the trainer checks when the first records tell the width.
        if self.n_features is not None:
            for column in parse_categorical_columns(self.categorical_columns):
                if column >= self.n_features:
                    raise _field_error("categorical_columns", f"column {column} is beyond the {self.n_features} "
                                                              f"features (--n-features)")
        return self

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if value in ("mlp", "logreg") or _MODULE_FUNCTION.match(value):
            return value
        if value.endswith(".keras"):
            if not Path(value).is_file():
                raise ValueError(f"no such model file: {value}")
            return value
        raise ValueError(f"expected mlp, logreg, a .keras file or module:function, got {value!r}")

    @model_validator(mode="after")
    def _check_batch_bounds(self) -> TrainerSettings:
        if self.min_batch_size > self.max_batch_size:
            raise _field_error("min_batch_size", f"{self.min_batch_size} is above --max-batch-size "
                                                 f"{self.max_batch_size}")
        return self

    def base_learning_rate(self) -> float:
        """--learning-rate, with auto resolved for the model."""
        if self.learning_rate == "auto":
            return LEARNING_RATES.get(self.model, 1e-3)
        return self.learning_rate

    def read_size(self) -> int:
        """Records the reader fetches at once: the largest step."""
        return self.max_batch_size if self.batch_size == "auto" else self.batch_size

    @model_validator(mode="after")
    def _check_publishing(self) -> TrainerSettings:
        if self.publish_every_batches == 0 and self.publish_every_seconds == 0:
            raise _field_error("publish_every_seconds", "set it or --publish-every-batches, or nothing is published")
        return self


class EvaluatorSettings(ConsumerSettings):
    """Evaluator: hot-loads the newest version and scores it on the test topic."""

    http_port: int = Field(9103, ge=0, le=65535, description="port of the HTTP endpoint; 0 disables it")
    group_id: str = Field("streamtrain-evaluator", description="consumer group shared by evaluator replicas")
    batch_size: int = Field(1024, ge=1, le=1_000_000, description="records per micro-batch")
    batch_max_wait_ms: int = Field(200, ge=1, description="longest wait to fill a micro-batch, in ms")
    model_source: ModelSource = "volume"
    window: int = Field(2000, ge=10, description="records in the sliding window for accuracy, loss and AUC")
    poll_seconds: float = Field(5.0, gt=0, description="seconds between scans of the model store (fallback to events)")
    report_dir: Path = Field(Path("reports"), description="writable directory for the accuracy CSV and PNG plot")
    plot_every_seconds: float = Field(30.0, gt=0, description="seconds between plot refreshes")
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session timeout, in ms")
    # The quality gate (serving/gate.py): the evaluator judges each version it scores and announces the verdict.
    gate: bool = Field(True, description="judge versions and announce promotions and rejections on the control topic")
    gate_min_records: int = Field(500, ge=10, description="test records a version must be scored on before a verdict")
    gate_metric: Literal["accuracy", "auc", "loss"] = Field(
        "accuracy", description="metric the gate compares: accuracy, auc (higher is better) or loss (lower is better)"
    )
    gate_floor: float = Field(
        0.0, ge=0, description="absolute bound: accuracy/AUC must reach it; log loss must stay at or below it "
        "(0 = no bound for loss)"
    )
    gate_tolerance: float = Field(
        0.02, ge=0, description="how much worse than the promoted version's metric a version may be and pass"
    )


class PredictorSettings(ConsumerSettings):
    """Predictor: scores the input topic into the output topic and answers TensorFlow-Serving-style REST requests
    with the version the serving decisions name."""

    http_port: int = Field(8501, ge=0, le=65535, description="port of the REST API and /metrics; 0 disables it")
    ingest: Literal["confluent"] = Field(  # type: ignore[assignment]  # transactions need confluent's consumer
        "confluent", description="Kafka reader: confluent only (the transactions commit the input offsets)"
    )
    group_id: str = Field("streamtrain-predictor", description="consumer group shared by predictor replicas")
    batch_size: int = Field(1024, ge=1, le=1_000_000, description="records per micro-batch (one transaction)")
    batch_max_wait_ms: int = Field(50, ge=1, description="longest wait to fill a micro-batch, in ms")
    model_source: ModelSource = "volume"
    serve: Literal["promoted", "newest"] = Field(
        "promoted", description="which version to serve when none is pinned: the newest promoted one (the gate's) "
        "or the newest complete one"
    )
    output_format: Literal["json", "csv"] = Field(
        "json", description="value format of the predictions: json or csv (class,probability,version)"
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="probability at or above which the predicted class is 1")
    transactional_id: str | None = Field(
        None, description="Kafka transactional.id of this replica (default: streamtrain-predictor-<host name>); "
        "unique per replica"
    )
    transaction_timeout_ms: int = Field(60_000, ge=1000, description="Kafka transaction.timeout.ms")
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session timeout, in ms")
    poll_seconds: float = Field(5.0, gt=0, description="seconds between scans of the model store")
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest REST request body accepted")
    max_request_instances: int = Field(10_000, ge=1, description="most instances one REST request may hold")
    request_batch_size: int = Field(64, ge=1, le=100_000, description="REST instances scored in one predict call")
    request_batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="how long a REST request waits for others to share its predict call, in ms"
    )


class ServingSettings(CommonSettings):
    """Show the serving decisions, or pin a version, unpin, or roll back to the previously promoted version."""

    action: Literal["status", "pin", "unpin", "rollback"] = Field(
        "status", description="status, pin (needs a version), unpin or rollback", json_schema_extra={"positional": True}
    )
    version: int | None = Field(None, ge=1, description="the version to pin", json_schema_extra={"positional": True})
    model_dir: Path = Field(Path("models"), description="base directory of the model store (the shared volume)")
    model_name: str = Field("streamtrain", description="model name")
    serve: Literal["promoted", "newest"] = Field(
        "promoted", description="the predictors' --serve policy, to show what they serve"
    )
    group_id: str = Field(
        "streamtrain-serving", description="the group id of the component whose credentials the command uses (in "
        "a chart's pod: that component's, from its env); the control topic is read as <group-id>.control, which its "
        "Kafka user may describe"
    )

    @model_validator(mode="after")
    def _check_version(self) -> ServingSettings:
        if (self.action == "pin") != (self.version is not None):
            raise _field_error("version", "pin takes a VERSION; the other actions take none")
        return self


class ControlSettings(CommonSettings):
    """Operate the trainer of a model: show whether it is paused; pause it (it consumes nothing and keeps its
    health, metrics and status, across restarts) or resume it (it goes on exactly where it stopped); rewind it to
    a version (it trains again from that version's checkpoint: a new lineage); skip the records before a point of
    the train topic (left out, recorded as skipped)."""

    action: Literal["status", "pause", "resume", "rewind", "skip"] = Field(
        "status", description="status, pause, resume, rewind (--to-version or --to-time) or skip (--to-offsets or "
        "--to-time)", json_schema_extra={"positional": True}
    )
    model_name: str = Field("streamtrain", description="model name")
    reason: str = Field("", max_length=500, description="why (kept with the event, shown by status)")
    to_version: int | None = Field(None, ge=1, description="rewind: the version to go back to")
    to_time: str | None = Field(
        None, description="rewind: to the newest version trained only on records older than this; skip: every record "
        "older than this. ISO 8601 (UTC unless it says otherwise) or milliseconds since the epoch"
    )
    to_offsets: str | None = Field(
        None, description="skip: the first offset to train again, per partition: PARTITION:OFFSET[,...]"
    )
    wait_seconds: float = Field(60.0, gt=0, description="rewind and skip: how long to wait for the trainer's answer")
    group_id: str = Field(
        "streamtrain-control", description="the group id of the component whose credentials the command uses (in "
        "a chart's pod: that component's, from its env); the control topic is read as <group-id>.control, which its "
        "Kafka user may describe"
    )

    @field_validator("to_time")
    @classmethod
    def _check_time(cls, value: str | None) -> str | None:
        if value is not None:
            time_ms(value)
        return value

    @field_validator("to_offsets")
    @classmethod
    def _check_offsets(cls, value: str | None) -> str | None:
        if value is not None:
            partition_offsets(value)
        return value

    @model_validator(mode="after")
    def _check_target(self) -> ControlSettings:
        given = [name for name in ("to_version", "to_time", "to_offsets") if getattr(self, name) is not None]
        wanted = {"rewind": ("to_version", "to_time"), "skip": ("to_offsets", "to_time")}.get(self.action, ())
        if wanted and len(given) != 1:
            raise _field_error(wanted[0], f"{self.action} takes one of --{wanted[0].replace('_', '-')} or "
                                          f"--{wanted[1].replace('_', '-')}")
        for name in given:
            if name not in wanted:
                raise _field_error(name, f"{self.action} takes no --{name.replace('_', '-')}")
        return self


def time_ms(text: str) -> int:
    """Milliseconds since the epoch from digits, or from an ISO 8601 time (UTC unless it has an offset)."""
    import datetime

    if text.strip().isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO 8601 (2026-12-01T10:00:00Z) nor milliseconds since the "
                         "epoch") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def partition_offsets(text: str) -> dict[int, int]:
    """{partition: offset} from PARTITION:OFFSET[,...]."""
    out = {}
    for item in text.split(","):
        partition, sep, offset = item.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"{item.strip()!r} is not PARTITION:OFFSET (for example 0:1200,1:1180)")
        out[int(partition)] = int(offset)
    return out


class ReportSettings(CommonSettings):
    """Write one self-contained HTML report (PNG plots inside) from the metrics topic or an accuracy CSV."""

    csv_path: Path | None = Field(
        None, description="the evaluator's accuracy.csv to report on instead of the metrics topic"
    )
    output: Path = Field(Path("streamtrain-report.html"), description="where to write the HTML report")
    title: str = Field("streamtrain run report", description="title of the report")
    idle_seconds: float = Field(3.0, gt=0, description="stop reading the metrics topic after this long without news")
    read_timeout_seconds: float = Field(120.0, gt=0, description="longest time spent reading the metrics topic")

    @field_validator("csv_path")
    @classmethod
    def _check_csv(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


class BrokerSettings(BaseSettings):
    """The embedded Kafka-protocol broker (tansu), for local runs and tests."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "BROKER_", extra="ignore")

    host: str = Field("127.0.0.1", description="listen address; loopback unless you mean otherwise")
    port: int = Field(9092, ge=0, le=65535, description="listen port; 0 picks a free one")
    advertised_host: str | None = Field(None, description="host name clients should use (default: --host)")
    cert: Path | None = Field(None, description="TLS certificate (PEM) to serve; clients then use SSL")
    key: Path | None = Field(None, description="TLS private key (PEM) of the certificate")
    client_ca: Path | None = Field(
        None, description="with TLS, require client certificates signed by this CA (PEM): mutual TLS"
    )
    topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="topics to create once up, comma-separated"
    )
    partitions: int = Field(1, ge=1, description="partitions of the created topics")

    @field_validator("topics", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [t for t in value.split(",") if t.strip()] if isinstance(value, str) else value

    @field_validator("cert", "key", "client_ca")
    @classmethod
    def _check_pem_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> BrokerSettings:
        if (self.cert is None) != (self.key is None):
            raise _field_error("key", "the TLS certificate and key go together")
        if self.client_ca is not None and self.cert is None:
            raise _field_error("client_ca", "mutual TLS needs --cert and --key too")
        return self


class DemoSettings(BaseSettings):
    """The whole pipeline on this machine: broker, producer, trainer, evaluator and predictor as processes."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "DEMO_", extra="ignore")

    source: Source = Field("susy", description="record source for the producer")
    csv_path: Path | None = Field(None, description="CSV file for --source csv")
    count: int = Field(40_000, ge=100, description="records to produce")
    rate: float = Field(
        500.0, ge=0, description="records per second (paced so the evaluator sees the model improve); 0 = max"
    )
    batch_size: StepSize = Field("auto", description="trainer records per optimizer step: auto (the smallest that "
                                 "keep up) or a number")
    partitions: int = Field(2, ge=1, description="partitions per topic")
    workdir: Path = Field(Path("demo-output"), description="model store, checkpoints, reports and logs go here")
    model: str = Field("mlp", description="trainer model (see streamtrain train --help)")


S = TypeVar("S", bound=BaseSettings)


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _choices(annotation: Any) -> list[str] | None:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType):
        # Choices only when every value is one (Literal[...] | None); "auto" | a number takes any number.
        found = [_choices(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        if found and all(found):
            return [choice for choices in found if choices for choice in choices]
    return None


def add_arguments(parser: argparse.ArgumentParser, settings_cls: type[BaseSettings]) -> None:
    """Add one flag per settings field; help names the env variable and the default."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    for name, info in settings_cls.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        env = f"{prefix}{name.upper()}"
        help_text = f"{info.description} [env {env}; default {shown}]"
        if positional(info):
            parser.add_argument(name, nargs="?", default=argparse.SUPPRESS, choices=_choices(info.annotation),
                                metavar=name.upper(), help=help_text)
            continue
        if _is_bool(info.annotation):
            parser.add_argument(flag_name(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag_name(name), dest=name, default=argparse.SUPPRESS, metavar=name.upper(),
                                choices=_choices(info.annotation), help=help_text)


def positional(info: Any) -> bool:
    """A field given as a positional argument (`streamtrain serving pin 7`), not a flag."""
    return isinstance(info.json_schema_extra, dict) and bool(info.json_schema_extra.get("positional"))


def load(settings_cls: type[S], args: argparse.Namespace | dict[str, Any] | None = None) -> S:
    """Build settings from flags (given) over env vars over defaults; raise ConfigError on a bad value."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    given = {k: v for k, v in given.items() if k in settings_cls.model_fields}
    prefix = settings_cls.model_config.get("env_prefix", "")
    try:
        return settings_cls(**given)
    except _FieldError as exc:
        raise ConfigError(_describe(exc.field, prefix, str(exc), settings_cls)) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        field_error = (error.get("ctx") or {}).get("error")
        if isinstance(field_error, _FieldError):
            raise ConfigError(_describe(field_error.field, prefix, str(field_error), settings_cls)) from None
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        if field in settings_cls.model_fields and error["type"] != "value_error" and not isinstance(value, dict):
            shown = "***" if "password" in field else repr(value)
            message = f"{message} (got {shown})"
        raise ConfigError(_describe(field, prefix, message, settings_cls)) from None


def _describe(field: str, prefix: str, message: str, settings_cls: type[BaseSettings] | None = None) -> str:
    info = settings_cls.model_fields.get(field) if settings_cls is not None else None
    name = field.upper() if info is not None and positional(info) else flag_name(field)
    return f"{name} ({prefix}{field.upper()}): {message}".replace("\n", " ")


def env_names(settings_cls: type[BaseSettings]) -> set[str]:
    """Every env variable a settings class reads; the chart tests check against this."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name.upper()}" for name in settings_cls.model_fields}

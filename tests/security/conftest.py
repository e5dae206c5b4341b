"""Security-test fixtures: a throwaway PKI made with the openssl command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamtrain.local.broker import BrokerError, tansu_binary
from tests.faults.helpers import TOPIC_KEYS, wait_until
from tests.support.processes import Component


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=cwd)


def _leaf(name: str, ca: str, extensions: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem (trusted), server.pem for DNS:localhost only, client.pem from the CA, rogue-client.pem from another."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make the test certificates (and the cryptography "
                    "package is not installed)")
    where = tmp_path_factory.mktemp("pki")
    _ca("ca", where)
    _ca("rogue-ca", where)
    _leaf("server", "ca", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth", where)
    _leaf("client", "ca", "extendedKeyUsage=clientAuth", where)
    _leaf("rogue-client", "rogue-ca", "extendedKeyUsage=clientAuth", where)
    return where


# ---- one pipeline run over mutual TLS, shared by the TLS and the secrets tests ----------------------------

SECRET_ENV = "pl4nted-pw-from-env-7Qx"
SECRET_FILE = "pl4nted-pw-from-file-3Kz"


@dataclass
class TlsRun:
    env: dict[str, str]
    workdir: Path
    broker: dict[str, Any]
    produced: dict[str, int]
    trainer: dict[str, Any]
    evaluator: dict[str, Any]
    http: dict[str, str] = field(default_factory=dict)  # /metrics and /status texts captured while running


@pytest.fixture(scope="session")
def tls_run(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRun]:
    """`streamtrain broker` with --cert/--key/--client-ca, then producer, trainer and evaluator over mutual TLS,
    configured from files and env as the chart mounts them, with secrets planted where they must not leak."""
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"embedded broker missing: {exc}")
    work = tmp_path_factory.mktemp("tls-run")
    password_file = work / "sasl-password"
    password_file.write_text(SECRET_FILE + "\n")
    prefix = f"tls{uuid.uuid4().hex[:6]}"
    topics = {f"STREAMTRAIN_{k}_TOPIC": f"{prefix}.{k.lower()}" for k in TOPIC_KEYS}
    env_base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
    broker_log = work / "broker.log"
    with broker_log.open("wb") as out:
        broker = subprocess.Popen(
            [sys.executable, "-m", "streamtrain", "broker", "--host", "127.0.0.1", "--advertised-host", "localhost",
             "--port", "0", "--cert", str(pki / "server.pem"), "--key", str(pki / "server.key"),
             "--client-ca", str(pki / "ca.pem"), "--topics", ",".join(topics.values()), "--partitions", "2"],
            env=env_base, stdout=out, stderr=subprocess.STDOUT)
    try:
        info = wait_until(lambda: _broker_line(broker_log), 90, "the broker's JSON line")
        env = {"STREAMTRAIN_BOOTSTRAP_SERVERS": info["bootstrap_servers"], **topics,
               "STREAMTRAIN_SECURITY_PROTOCOL": "SSL", "STREAMTRAIN_SSL_CA_LOCATION": str(pki / "ca.pem"),
               "STREAMTRAIN_SSL_CERTIFICATE_LOCATION": str(pki / "client.pem"),
               "STREAMTRAIN_SSL_KEY_LOCATION": str(pki / "client.key"),
               "STREAMTRAIN_SASL_USERNAME": "planted-user", "STREAMTRAIN_SASL_PASSWORD": SECRET_ENV,
               "STREAMTRAIN_SASL_PASSWORD_FILE": str(password_file), "STREAMTRAIN_LOG_LEVEL": "DEBUG"}
        logs, models = work / "logs", work / "models"
        producer = Component("producer", env, logs, source="susy", count=8_000, rate=2_000, test_fraction=0.25,
                             summary_file=work / "producer.json")
        trainer = Component("trainer", env, logs, model_dir=models, checkpoint_dir=work / "ckpt", batch_size=128,
                            publish_every_seconds=1, summary_file=work / "trainer.json")
        evaluator = Component("evaluator", env, logs, model_dir=models, report_dir=work / "reports",
                              poll_seconds=1, session_timeout_ms=6000, summary_file=work / "evaluator.json")
        http: dict[str, str] = {}
        try:
            trainer.start()
            evaluator.start()
            trainer.wait_for(lambda s: True, 180, "trainer endpoint")
            producer.start()
            producer.wait_for(lambda s: True, 120, "producer endpoint")
            http["producer /metrics"] = producer.get("/metrics")[1]
            http["producer /status"] = producer.get("/status")[1]
            assert producer.wait_exit(180) == 0, producer.log_tail()
            produced = json.loads((work / "producer.json").read_text())["produced"]
            trainer.wait_for(lambda s: s["records_trained"] >= produced["train"], 240, "every train record")
            evaluator.wait_for(lambda s: s["records_evaluated"] >= produced["test"], 240, "every test record")
            for component in (trainer, evaluator):
                for path in ("/metrics", "/status", "/healthz", "/readyz"):
                    http[f"{component.name} {path}"] = component.get(path)[1]
            assert trainer.stop(60) == 0, trainer.log_tail()
            assert evaluator.stop(60) == 0, evaluator.log_tail()
        finally:
            for component in (producer, trainer, evaluator):
                component.stop()
        yield TlsRun(env, work, info, produced, json.loads((work / "trainer.json").read_text()),
                     json.loads((work / "evaluator.json").read_text()), http)
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()


def _broker_line(log: Path) -> dict[str, Any] | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and "bootstrap_servers" in line:
            found: dict[str, Any] = json.loads(line)
            return found
    return None

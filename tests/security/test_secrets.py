"""No credential ever shows: planted secrets are absent from logs, metrics, status, manifests, files and topics.

The mutual-TLS pipeline run (conftest.tls_run) holds a SASL password in an env variable, another in a
password file, and the client's private key in a file, all at DEBUG log level. Everything the run left
behind and everything it served is searched for them. A SASL run that fails authentication and a
configuration error are searched too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.helpers import client_conf, read_all
from tests.security.conftest import SECRET_ENV, SECRET_FILE, TlsRun

pytestmark = pytest.mark.integration


def _key_lines(pki: Path) -> list[bytes]:
    """Lines of the client's private key (base64 body), each specific enough to count as the secret."""
    body = [line for line in (pki / "client.key").read_bytes().splitlines() if line and not line.startswith(b"-")]
    return body[1:-1]


def _found_in(data: bytes, secrets: list[bytes]) -> list[bytes]:
    return [secret for secret in secrets if secret in data]


def test_planted_secrets_appear_nowhere(tls_run: TlsRun, pki: Path) -> None:
    secrets = [SECRET_ENV.encode(), SECRET_FILE.encode(), *_key_lines(pki)]
    # The run really held them: the components were configured with these values and files.
    assert tls_run.env["STREAMTRAIN_SASL_PASSWORD"] == SECRET_ENV
    assert SECRET_FILE in Path(tls_run.env["STREAMTRAIN_SASL_PASSWORD_FILE"]).read_text()

    leaks: list[str] = []
    files = [p for p in tls_run.workdir.rglob("*") if p.is_file() and p.name != "sasl-password"]
    for path in files:  # logs (DEBUG), broker output, summaries, manifests, model files, checkpoints, reports
        leaks += [f"{path.relative_to(tls_run.workdir)}: {s[:12]!r}" for s in _found_in(path.read_bytes(), secrets)]
    for what, text in tls_run.http.items():  # /metrics, /status, /healthz, /readyz
        leaks += [f"{what}: {s[:12]!r}" for s in _found_in(text.encode(), secrets)]
    conf = client_conf(tls_run.env)
    for key in ("METRICS", "MODEL_EVENTS", "DEAD_LETTER", "TRAIN", "TEST"):
        topic = tls_run.env[f"STREAMTRAIN_{key}_TOPIC"]
        for msg in read_all(conf, topic, idle=1.0):
            data = (msg.key() or b"") + (msg.value() or b"") + b"".join(k.encode() + v for k, v in msg.headers() or [])
            leaks += [f"topic {topic}: {s[:12]!r}" for s in _found_in(data, secrets)]
    assert not leaks, leaks
    # The search would have found them: the same scan finds the (public) topic name in the logs.
    control = tls_run.env["STREAMTRAIN_TRAIN_TOPIC"].encode()
    assert any(control in p.read_bytes() for p in files if p.suffix == ".log")
    names = {p.name for p in files}
    assert {"manifest.json", "state.json", "trainer.json", "broker.log"} <= names  # the search saw them all
    assert len(tls_run.http) >= 10


def test_configuration_errors_do_not_show_the_password(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(SECRET_FILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
    env.update({"STREAMTRAIN_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "STREAMTRAIN_SASL_USERNAME": "u",
                "STREAMTRAIN_SASL_PASSWORD": SECRET_ENV, "STREAMTRAIN_SASL_PASSWORD_FILE": str(password_file),
                "STREAMTRAIN_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    for argv in (["topics", "--partitions", "0"], ["train", "--batch-size", "-1"], ["produce", "--rate", "x"],
                 ["evaluate", "--sasl-mechanism", "GSSAPI"]):
        bad = subprocess.run([sys.executable, "-m", "streamtrain", *argv], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        assert bad.returncode == 2, (argv, bad.stderr)
        assert SECRET_ENV not in bad.stdout + bad.stderr and SECRET_FILE not in bad.stdout + bad.stderr, argv

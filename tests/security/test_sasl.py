"""SASL/SCRAM against the embedded broker: what tansu 0.6 can and cannot do, measured.

tansu 0.6.0 has a SCRAM server (`tansu broker --authentication`) but with the memory storage engine
(the only one in the shipped binary) no user can be created: `tansu user create` sends an
AlterUserScramCredentials request, which a broker with --authentication refuses before login
(NotAuthenticated), and a broker without it forgets everything on restart and does not offer SASL
at all. So SCRAM cannot be tested end to end here; it is tested against real Kafka (Strimzi
KafkaUser secrets) in the cluster suite. What is tested here: the broker with --authentication
refuses unauthenticated clients; our client, configured from a password file as the chart mounts
it, runs the SCRAM exchange (the broker answers "unknown-user", so it looked our user up); and the
password shows nowhere in the component's output. If a later tansu can create users, the first
test fails and says so: then turn it into an end-to-end SCRAM test.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamtrain.local.broker import BrokerError, free_port, tansu_binary
from tests.faults.helpers import wait_until
from tests.support.processes import Component

pytestmark = pytest.mark.integration

PASSWORD = "pl4nted-scram-pw-9Wd"


def _tansu(port: int, authentication: bool, log: Path) -> subprocess.Popen[bytes]:
    cmd = [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
           "--advertised-listener-url", f"tcp://127.0.0.1:{port}", "--storage-engine", "memory://tansu/"]
    env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL")}
    with log.open("wb") as out:
        process = subprocess.Popen(cmd + (["--authentication"] if authentication else []),
                                   stdout=out, stderr=subprocess.STDOUT, env={**env, "RUST_LOG": "warn"})
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_until(listening, 30, "tansu to listen")
    return process


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"embedded broker missing: {exc}")
    port, log = free_port(), tmp_path / "tansu.log"
    process = _tansu(port, True, log)
    try:
        yield port, log
    finally:
        process.kill()
        process.wait()


def _metadata(conf: dict[str, Any]) -> str:
    try:
        AdminClient({**conf, "log_level": 0}).list_topics(timeout=6)
    except KafkaException as exc:
        return str(exc)
    return "ok"


def test_tansu_0_6_cannot_provision_scram_users_with_memory_storage(auth_broker: tuple[int, Path],
                                                                    tmp_path: Path) -> None:
    port, log = auth_broker
    created = subprocess.run([str(tansu_binary()), "user", "create", "--broker", f"tcp://127.0.0.1:{port}",
                              "alice", PASSWORD], capture_output=True, text=True, timeout=60, check=False)
    assert created.returncode != 0, "tansu can create SCRAM users now: make this an end-to-end SCRAM test"
    assert "NotAuthenticated" in log.read_text(errors="replace")
    # Without --authentication the user would be accepted, but SASL is then not offered at all.
    plain_port = free_port()
    plain = _tansu(plain_port, False, tmp_path / "plain.log")
    try:
        made = subprocess.run([str(tansu_binary()), "user", "create", "--broker", f"tcp://127.0.0.1:{plain_port}",
                               "alice", PASSWORD], capture_output=True, text=True, timeout=60, check=False)
        assert made.returncode == 0, made.stderr
        assert _metadata({"bootstrap.servers": f"127.0.0.1:{plain_port}"}) == "ok"
        assert _metadata({"bootstrap.servers": f"127.0.0.1:{plain_port}", "security.protocol": "SASL_PLAINTEXT",
                          "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
                          "sasl.password": PASSWORD}) != "ok"
    finally:
        plain.kill()
        plain.wait()


def test_authentication_is_required_and_our_client_speaks_scram(auth_broker: tuple[int, Path],
                                                               tmp_path: Path) -> None:
    port, _log = auth_broker
    assert _metadata({"bootstrap.servers": f"127.0.0.1:{port}"}) != "ok"  # no login, no metadata

    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")  # as a mounted Secret: a trailing newline is common
    env = {"STREAMTRAIN_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "STREAMTRAIN_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "STREAMTRAIN_SASL_MECHANISM": "SCRAM-SHA-512", "STREAMTRAIN_SASL_USERNAME": "streamtrain-trainer",
           "STREAMTRAIN_SASL_PASSWORD_FILE": str(password_file), "STREAMTRAIN_LOG_LEVEL": "DEBUG"}
    trainer = Component("trainer", env, tmp_path / "logs", model_dir=tmp_path / "m", checkpoint_dir=tmp_path / "c")
    trainer.start()
    try:
        trainer.wait_for(lambda s: True, 180, "trainer endpoint")
        wait_until(lambda: "unknown-user" in trainer.log_path.read_text(errors="replace"), 90,
                   "the SCRAM exchange to reach the broker's user lookup")
        _code, metrics = trainer.get("/metrics")
        assert "streamtrain_broker_reachable" in metrics
        status = trainer.get("/status")[1]
    finally:
        trainer.kill()
    output = trainer.log_path.read_text(errors="replace")
    assert "SASL SCRAM authentication failed" in output
    assert PASSWORD not in output + metrics + status

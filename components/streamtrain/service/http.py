"""The HTTP endpoint each component serves: /metrics, /healthz, /readyz, /status (and pages), and an optional
app behind them (the predictor's REST API)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class Health:
    """Liveness = the main loop beat recently; readiness = the component says it is ready."""

    def __init__(self, stall_seconds: float = 120.0) -> None:
        self.ready = False
        self.stall_seconds = stall_seconds
        self._beat = time.monotonic()

    def beat(self) -> None:
        self._beat = time.monotonic()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self._beat < self.stall_seconds


Route = Callable[[], tuple[int, str, bytes]]
# An application behind the fixed routes: (method, path with its query, body) -> (code, content type, body).
App = Callable[[str, str, bytes], tuple[int, str, bytes]]

MAX_BODY = 1024 * 1024  # bytes of a request body an app is handed, unless serve() is told otherwise


@dataclass(frozen=True)
class Endpoints:
    """What a component serves beyond /metrics, /healthz, /readyz and /status: fixed GET routes (pages), and an
    app for every other path (the predictor's REST API) with the largest body it takes."""

    routes: dict[str, Route] = field(default_factory=dict)
    app: App | None = None
    max_body: int = MAX_BODY
REQUEST_TIMEOUT = 30.0  # seconds a client may stall mid-request before its connection (and thread) is dropped
LINGER_SECONDS = 2.0  # how long an unread request body is drained after a refusal (see _refuse)


def serve(host: str, port: int, health: Health, status: Callable[[], dict[str, Any]],
          registry: CollectorRegistry = REGISTRY, extra: dict[str, Route] | None = None,
          app: App | None = None, max_body: int = MAX_BODY) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (its real port is server_address[1]).

    GET requests for the fixed routes (/metrics, /healthz, /readyz, /status and `extra`) are answered by them; any
    other GET, POST, PUT, PATCH or DELETE goes to `app` when there is one, with a body of at most `max_body` bytes.
    Refusals made here (no or bad Content-Length, a body over `max_body`, an app that raised) are JSON
    {"error": "<one line>"}, as TensorFlow Serving's are.
    """
    routes: dict[str, Route] = {
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
        "/healthz": lambda: _flag(health.alive, "alive", "stalled"),
        "/readyz": lambda: _flag(health.ready, "ready", "not ready"),
        "/status": lambda: (200, "application/json", json.dumps(status(), default=str).encode()),
    }
    routes.update(extra or {})

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT  # a client that stops sending mid-request must not hold a thread for good
        # HTTP/1.1: clients keep their connection between requests (every answer carries Content-Length); under
        # HTTP/1.0 each REST request paid a TCP connect.
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # keep-alive answers are two writes; Nagle held the second for the ACK (40 ms)

        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is not None:
                self._answer(*_guarded(route))
            elif app is not None:
                self._answer(*_guarded(lambda: app("GET", self.path, b"")))
            else:
                self._answer(404, "text/plain", b"not found\n")

        def do_POST(self) -> None:
            if app is None:  # no app: http.server's own answer, as before apps existed
                self.send_error(501, f"Unsupported method ({self.command!r})")
            elif self.path.split("?", 1)[0] in routes:
                self._refuse(405, f"{self.command} is not allowed on {self.path.split('?', 1)[0]}; use GET")
            else:
                body = self._body()
                if body is not None:
                    self._answer(*_guarded(lambda: app(self.command, self.path, body)))

        do_PUT = do_PATCH = do_DELETE = do_POST

        def _body(self) -> bytes | None:
            """The request body, or None after refusing the request: its length is checked before it is read."""
            length = self.headers.get("Content-Length")
            if length is None:
                if self.command == "DELETE" and "Transfer-Encoding" not in self.headers:
                    return b""
                self._refuse(411, "the request needs a Content-Length header (chunked bodies are not accepted)")
                return None
            text = length.strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 18):
                self._refuse(400, f"Content-Length {length[:40]!r} is not a byte count")
                return None
            size = int(text)
            if size > max_body:
                self._refuse(413, f"the request body of {size} bytes is over the limit of {max_body} bytes")
                return None
            body = self.rfile.read(size)
            if len(body) < size:
                self._answer(*_error(400, f"the body ended after {len(body)} of its {size} bytes"))
                return None
            return body

        def _answer(self, code: int, ctype: str, body: bytes) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client left; nobody to tell
                self.close_connection = True

        def _refuse(self, code: int, reason: str) -> None:
            """Answer without reading the body, then drain (and drop) what the client still sends for a moment:
            closing a socket with unread data resets the connection, and the client would lose the answer."""
            self.close_connection = True
            self._answer(*_error(code, reason))
            try:
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(LINGER_SECONDS)
                deadline = time.monotonic() + LINGER_SECONDS
                while time.monotonic() < deadline and self.connection.recv(65536):
                    pass
            except OSError:
                pass

        def log_message(self, *_: Any) -> None:  # probes every few seconds would flood the log
            pass

    server = _Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("http endpoint up", extra={"address": f"{host}:{server.server_address[1]}"})
    return server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 refused connections once 64 REST clients arrived at once (measured:
    # resets and 1 s retries); 128 took them all.
    request_queue_size = 128


def _guarded(handler: Route) -> tuple[int, str, bytes]:
    """The handler's answer; a handler that raises is a fault of the server: logged, and a 500 with one line."""
    try:
        return handler()
    except Exception as exc:
        log.exception("http handler failed")
        return _error(500, f"internal error: {type(exc).__name__}")


def _error(code: int, reason: str) -> tuple[int, str, bytes]:
    return code, "application/json", json.dumps({"error": reason}).encode()


def _flag(ok: bool, yes: str, no: str) -> tuple[int, str, bytes]:
    return (200, "text/plain", f"{yes}\n".encode()) if ok else (503, "text/plain", f"{no}\n".encode())


def fetch_status(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> dict[str, Any] | None:
    """A component's /status as a dict, or None while it does not answer (starting, stopped)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=timeout) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (OSError, ValueError):
        return None

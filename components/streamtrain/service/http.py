"""The HTTP endpoint each component serves: /metrics, /healthz, /readyz, /status (and pages)."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
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


def serve(host: str, port: int, health: Health, status: Callable[[], dict[str, Any]],
          registry: CollectorRegistry = REGISTRY, extra: dict[str, Route] | None = None) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (its real port is server_address[1])."""
    routes: dict[str, Route] = {
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
        "/healthz": lambda: _flag(health.alive, "alive", "stalled"),
        "/readyz": lambda: _flag(health.ready, "ready", "not ready"),
        "/status": lambda: (200, "application/json", json.dumps(status(), default=str).encode()),
    }
    routes.update(extra or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            code, ctype, body = route() if route else (404, "text/plain", b"not found\n")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:  # probes every few seconds would flood the log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("http endpoint up", extra={"address": f"{host}:{server.server_address[1]}"})
    return server


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

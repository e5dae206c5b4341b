"""A stand-in for the Kubernetes API server's pod endpoints, for the kubectl plugin's Kubernetes transport: the
kubernetes client's real classes (CoreV1Api, its websocket exec client) talk HTTP to it, and it records every
request, so tests see the label selectors, proxy paths and exec commands the transport really sends.

It answers: the pod list (with the label selector recorded), /status through the pod proxy, and exec over a
websocket (channel.k8s.io v4: stdout on channel 1, stderr on 2, the Status with the exit code on 3).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # decoded
    query: dict[str, list[str]]
    websocket: bool


@dataclass
class FakeApiServer:
    pods: list[dict[str, Any]]  # V1Pod-shaped JSON
    statuses: dict[str, Any] = field(default_factory=dict)  # pod name -> /status JSON (absent: 503)
    # exec: (pod, command) -> (exit code, stdout, stderr)
    exec_handler: Callable[[str, list[str]], tuple[int, str, str]] = lambda pod, argv: (0, "{}", "")
    forbidden: set[str] = field(default_factory=set)  # "list", "proxy", "exec": answered 403
    requests: list[Request] = field(default_factory=list)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        path = unquote(url.path)
        websocket = handler.headers.get("Upgrade", "").lower() == "websocket"
        self.requests.append(Request(handler.command, path, parse_qs(url.query), websocket))
        parts = path.strip("/").split("/")
        # /api/v1/namespaces/{ns}/pods[/{name}/{proxy|exec}[/...]]
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5 or parts[4] != "pods":
            return _json(handler, 404, {"kind": "Status", "status": "Failure", "code": 404})
        if len(parts) == 5:
            if "list" in self.forbidden:
                return _json(handler, 403, _status_failure(403, "forbidden"))
            return _json(handler, 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods})
        name, sub = parts[5], parts[6] if len(parts) > 6 else ""
        if sub == "proxy":
            if "proxy" in self.forbidden:
                return _json(handler, 403, _status_failure(403, "forbidden"))
            pod = name.split(":")[0]
            if pod not in self.statuses:
                return _json(handler, 503, _status_failure(503, "no endpoint"))
            return _json(handler, 200, self.statuses[pod])
        if sub == "exec" and websocket:
            if "exec" in self.forbidden:
                return _json(handler, 403, _status_failure(403, "forbidden"))
            return self._exec(handler, name, parse_qs(url.query).get("command", []))
        return _json(handler, 404, _status_failure(404, "not found"))

    def _exec(self, handler: BaseHTTPRequestHandler, pod: str, argv: list[str]) -> None:
        key = handler.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept)
        handler.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        handler.end_headers()
        code, out, err = self.exec_handler(pod, argv)
        if code == 0:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        else:
            status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": f"command terminated with non-zero exit code: {code}",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        for channel, data in ((1, out.encode()), (2, err.encode()), (3, json.dumps(status).encode())):
            if data:
                handler.wfile.write(_frame(0x2, bytes([channel]) + data))
        handler.wfile.write(_frame(0x8, b""))
        handler.wfile.flush()
        handler.close_connection = True


def _frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame (RFC 6455)."""
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    if len(payload) < 65536:
        return head + bytes([126]) + struct.pack(">H", len(payload)) + payload
    return head + bytes([127]) + struct.pack(">Q", len(payload)) + payload


def _status_failure(code: int, reason: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "code": code}


def _json(handler: BaseHTTPRequestHandler, code: int, body: Any) -> None:
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def serving(fake: FakeApiServer, tmp: Path, namespace: str = "streamtrain") -> Iterator[Path]:
    """Run the fake on a loopback port; yield a kubeconfig whose current context points at it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            fake.handle(self)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "operator", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "operator", "namespace": namespace}},
                     {"name": "other", "context": {"cluster": "fake", "user": "operator"}}],
    }))
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def pod(name: str, component: str, release: str = "streamtrain", port: int = 9102, ready: bool = True,
        restarts: int = 0) -> dict[str, Any]:
    """A pod as the chart renders it (labels, container named after the component, port `http`), running."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "streamtrain", "labels": {
            "app.kubernetes.io/part-of": "streamtrain", "app.kubernetes.io/instance": release,
            "app.kubernetes.io/component": component}},
        "spec": {"containers": [{"name": component, "image": "streamtrain:0",
                                 "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"name": component, "ready": ready, "restartCount": restarts,
                                          "image": "streamtrain:0", "imageID": "", "started": True}]},
    }

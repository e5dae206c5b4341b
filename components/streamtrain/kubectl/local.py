"""The local transport: components running as processes on this machine (`streamtrain train` etc., `make demo`).
/status is read over HTTP from each component's URL; commands run as `streamtrain ...` subprocesses with the
plugin's environment plus the env of the local config (the same STREAMTRAIN_* settings the components got)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from streamtrain.kubectl.errors import ActionFailed, UsageError
from streamtrain.kubectl.transport import COMPONENTS, DEFAULT_PORTS, Completed, Pod

HTTP_TIMEOUT = 5.0


def default_urls() -> dict[str, str]:
    return {c: f"http://127.0.0.1:{port}" for c, port in DEFAULT_PORTS.items()}


@dataclass
class LocalTransport:
    urls: dict[str, str] = field(default_factory=default_urls)  # component -> base URL of its HTTP endpoint
    env: dict[str, str] = field(default_factory=dict)  # added to the plugin's environment for commands
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "streamtrain"])

    @property
    def description(self) -> str:
        return "local components at " + ", ".join(f"{c} {u}" for c, u in self.urls.items())

    def pods(self) -> list[Pod]:
        found = []
        for component in COMPONENTS:
            url = self.urls.get(component)
            if not url:
                continue
            code = _get(f"{url}/readyz")[0]
            if code == 0:  # nothing answers there: no such component here
                continue
            port = urlsplit(url).port or DEFAULT_PORTS[component]
            found.append(Pod(f"{component}@{urlsplit(url).netloc}", component, code == 200, "Running", None, port))
        return found

    def status(self, pod: Pod) -> dict[str, Any] | None:
        code, body = _get(f"{self.urls[pod.component]}/status")
        try:
            data = json.loads(body) if code == 200 else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def run(self, pod: Pod, argv: list[str], timeout: float) -> Completed:
        command = [*self.command, *argv[1:]] if argv and argv[0] == "streamtrain" else argv
        env = {**os.environ, **self.env}
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ActionFailed(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise ActionFailed(f"cannot run `{' '.join(argv)}`: {exc}") from None
        return Completed(done.returncode, done.stdout, done.stderr, "local")


def _get(url: str) -> tuple[int, str]:
    """(HTTP status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError):
        return 0, ""


def load_config(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A local config file (YAML or JSON): `urls: {component: URL}` and `env: {NAME: value}`."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the local config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or set(data) - {"urls", "env"}:
        raise UsageError(f"the local config {path} takes only `urls` and `env` mappings")
    urls, env = data.get("urls") or {}, data.get("env") or {}
    if not isinstance(urls, dict) or set(urls) - set(COMPONENTS):
        raise UsageError(f"{path}: `urls` maps components ({', '.join(COMPONENTS)}) to URLs")
    if not isinstance(env, dict):
        raise UsageError(f"{path}: `env` maps variable names to values")
    return {str(k): str(v).rstrip("/") for k, v in urls.items()}, {str(k): str(v) for k, v in env.items()}

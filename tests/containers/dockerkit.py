"""Small helpers over the `docker` CLI for the container tests (no Docker SDK needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
APP_REPO = "streamtrain"
BROKER_REPO = "streamtrain-broker"
OFFLINE_BASE = "streamtrain-base:bookworm-py311"
STACK_LABEL = "io.streamtrain.stack"
# How the chart runs every container (restricted Pod Security Standard, read-only root filesystem).
HARDENED = ("--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,size=256m,mode=1777")


class DockerError(RuntimeError):
    pass


def engine_unavailable() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    if shutil.which("docker") is None:
        return "no `docker` CLI on PATH (make docker-engine installs docker.io and starts dockerd)"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers (`docker info`: {detail}); run `make docker-engine` as root"
    return None


def docker(*args: str, timeout: float = 120, check: bool = True, env: Mapping[str, str] | None = None,
           input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None, input=input_text)
    if check and proc.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}"
                          f"\n{proc.stderr[-4000:]}")
    return proc


def script(name: str, *args: str, env: Mapping[str, str], log: Path, timeout: float) -> None:
    """Run docker/<name> with env, appending its output to log; raise with the log's tail on failure."""
    with log.open("a") as out:
        out.write(f"\n$ docker/{name} {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run([str(REPO / "docker" / name), *args], cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, **env}, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise DockerError(f"docker/{name} exited {proc.returncode}; last lines of {log}:\n{tail}")


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


def inspect(ref: str, kind: str = "container") -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker(kind, "inspect", ref).stdout)
    return data[0]


def exec_python(container: str, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return docker("exec", container, "python3", "-c", code, timeout=timeout, check=False)


def http_get(container: str, url: str, timeout: float = 30) -> str | None:
    """GET url from inside a running container (its loopback or its network); None when it fails."""
    code = ("import sys, urllib.request\n"
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=10).read().decode())")
    proc = exec_python(container, code, timeout)
    return proc.stdout if proc.returncode == 0 else None


def status(container: str, port: int) -> dict[str, Any] | None:
    text = http_get(container, f"http://127.0.0.1:{port}/status")
    return json.loads(text) if text else None


def running(container: str) -> bool:
    proc = docker("inspect", "-f", "{{.State.Running}}", container, check=False)
    return proc.stdout.strip() == "true"


def exit_code(container: str) -> int:
    return int(docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip())


def health(container: str) -> str:
    return docker("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", container,
                  check=False).stdout.strip()


def logs(container: str, tail: int = 60) -> str:
    proc = docker("logs", "--tail", str(tail), container, check=False)
    return proc.stdout + proc.stderr


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0,
             on_timeout: Callable[[], str] | None = None) -> Any:
    """Call probe until it returns something truthy; fail with `what` (and diagnostics) after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}")
        time.sleep(interval)


def leftovers(stack: str) -> dict[str, list[str]]:
    """Containers, networks and volumes still labelled with this stack."""
    label = f"label={STACK_LABEL}={stack}"
    found = {
        "containers": docker("ps", "-aq", "--filter", label).stdout.split(),
        "networks": docker("network", "ls", "-q", "--filter", label).stdout.split(),
        "volumes": docker("volume", "ls", "-q", "--filter", label).stdout.split(),
    }
    return {kind: ids for kind, ids in found.items() if ids}


def pip_of_this_python() -> str:
    return str(Path(sys.executable).with_name("pip"))

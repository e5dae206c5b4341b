"""Run components as real processes, the way pods run them: env configuration only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamtrain.local.broker import free_port
from streamtrain.service.http import fetch_status

COMMANDS = {"producer": "produce", "trainer": "train", "evaluator": "evaluate", "predictor": "predict"}


class Component:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path, **options: Any) -> None:
        self.name = name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
        self.env.update(env)
        self.env.update({f"STREAMTRAIN_{k.upper()}": str(v) for k, v in options.items()})
        self.env.setdefault("STREAMTRAIN_HTTP_HOST", "127.0.0.1")
        self.env.setdefault("STREAMTRAIN_HTTP_PORT", str(free_port()))
        self.env.setdefault("STREAMTRAIN_LOG_FORMAT", "json")
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.port = int(self.env["STREAMTRAIN_HTTP_PORT"])
        self.log_dir = log_dir
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.runs}.log"

    def start(self) -> Component:
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "streamtrain", COMMANDS[self.name]],
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def status(self) -> dict[str, Any] | None:
        return fetch_status(self.port)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and predicate(status):
                return status
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) waiting for {what}:\n"
                                     + self.log_tail())
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: timed out waiting for {what}; last status {self.status()}\n"
                             + self.log_tail())

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s\n{self.log_tail()}") from None

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for run in range(1, self.runs + 1):
            for line in (self.log_dir / f"{self.name}-{run}.log").read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(line))
        return out

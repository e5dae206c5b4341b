"""Real headless Chromium (Debian's chromium + chromium-driver) driven over the WebDriver protocol.

No client library: the W3C WebDriver endpoints are plain JSON over HTTP, spoken here with urllib.
`make chromium` installs the Debian packages (CI runs it before pytest); tests never install anything.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from streamtrain.local.broker import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags for a closed network: no background connections, no component updates, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1400"]


def ensure_chromium() -> str | None:
    """None when Chromium and ChromeDriver are installed; otherwise why not (the caller skips with it)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (make chromium: Debian's chromium and chromium-driver)"
    return None


class Browser:
    """One ChromeDriver process and one headless Chromium session."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="streamtrain-chromium-")
        self._log = log_path.open("wb")
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=self._log,
                                       stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except (OSError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromedriver did not become ready")
            time.sleep(0.2)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={self.profile}"]}
        created = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        self.session = created["sessionId"]
        self.version = created["capabilities"].get("browserVersion")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webdriver {method} {path}: {exc.read().decode(errors='replace')[:500]}") from None

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))
        return path

    def wait_for(self, script: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.js(script)
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"page: timed out waiting for {what} (last value {value!r})")

    def close(self) -> None:
        try:
            if getattr(self, "session", None):
                self._call("DELETE", f"/session/{self.session}")
        except (OSError, RuntimeError):
            pass
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

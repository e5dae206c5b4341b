"""Container HEALTHCHECK: GET /healthz of the component that runs as PID 1.

The port is STREAMTRAIN_HTTP_PORT when set (0 = endpoint disabled: healthy by definition),
else the component's default: produce 9101, train 9102, evaluate 9103. Commands without an
endpoint (topics, inspect, --help) are healthy. Standard library only; exit 0 = healthy.
Kubernetes does not use this: the chart points httpGet probes at /healthz and /readyz.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_PORTS = {"produce": 9101, "train": 9102, "evaluate": 9103}


def component() -> str | None:
    try:
        with open("/proc/1/cmdline", "rb") as fh:
            args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return None
    return next((a for a in args if a in DEFAULT_PORTS), None)


def main() -> int:
    name = component()
    port_text = os.environ.get("STREAMTRAIN_HTTP_PORT")
    if port_text is not None:
        port = int(port_text)
    elif name is not None:
        port = DEFAULT_PORTS[name]
    else:
        return 0
    if port == 0:
        return 0
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

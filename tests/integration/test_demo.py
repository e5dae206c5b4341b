"""The README's first command, `make demo`, end to end (a shorter stream than its default)."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_runs_the_pipeline_and_cleans_up(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    result = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_ARGS=--count 4000 --rate 1000 --workdir {work}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "records trained" in out and "model versions published" in out and "final accuracy" in out
    assert (work / "reports" / "accuracy.png").stat().st_size > 1000
    assert list((work / "models" / "streamtrain").iterdir())
    # Every process it started is gone: the broker's port is closed, no component is left.
    port = int(re.search(r"broker up at 127\.0\.0\.1:(\d+)", out).group(1))  # type: ignore[union-attr]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert _processes_with_env(str(work)) == []


def _processes_with_env(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found

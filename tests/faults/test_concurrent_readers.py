"""Many reader processes during 1,000 publications never load a partial or mixed version.

One writer process publishes 1,000 versions (keeping the newest 3, so retention deletes under the
readers' feet); three reader processes load the newest version in a loop, as the evaluator does.
The layout makes a version appear by one rename of a complete, fsynced directory and disappear by
one rename before deletion, so a reader sees a whole version or none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamtrain.store import model_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PUBLICATIONS = 1_000
READERS = 3
KEEP = 3
REPO = Path(__file__).resolve().parents[2]


def _worker(*args: object) -> list[str]:
    return [sys.executable, "-m", "tests.faults.store_worker", *map(str, args)]


def test_concurrent_readers_during_1000_publications(tmp_path: Path) -> None:
    base, stop = tmp_path / "models", tmp_path / "stop"
    base.mkdir()
    readers = [subprocess.Popen(_worker("reader", base, stop, tmp_path / f"reader-{i}.json"), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(READERS)]
    try:
        writer = subprocess.run(_worker("writer", base, PUBLICATIONS, KEEP), cwd=REPO, capture_output=True,
                                text=True, timeout=900, check=False)
        assert writer.returncode == 0, writer.stderr[-3000:]
    finally:
        stop.touch()
        for process in readers:
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
    for i, process in enumerate(readers):
        assert process.returncode == 0, (process.stderr.read() if process.stderr else b"")[-3000:]
        result = json.loads((tmp_path / f"reader-{i}.json").read_text())
        print(f"reader {i}: {result}")
        assert result["partial"] == 0 and result["mixed"] == 0, result["problems"]
        assert result["loads"] >= 50, result  # they really were reading throughout
    assert model_store.version_numbers(base, "m") == list(range(PUBLICATIONS - KEEP + 1, PUBLICATIONS + 1))
    assert not [p for p in (base / "m").iterdir() if p.name.startswith(".")]  # no staging or deletion leftovers
    print("writer:", writer.stdout.strip())

"""The benchmark suite's small mode runs end to end and writes well-formed results (nothing here is timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import report
from benchmarks.suite import BENCHMARKS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_mode_writes_every_benchmark(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = list(tmp_path.glob("*.json"))
    assert len(results) == 1, results
    document = json.loads(results[0].read_text())
    assert document["mode"] == "quick"
    assert report.problems(document, BENCHMARKS) == []
    assert (tmp_path / document["plot"]).stat().st_size > 10_000  # the throughput-vs-batch-size PNG
    assert "trainer throughput" in run.stdout  # the printed table
    measures = {(row["benchmark"], row["measure"]) for row in document["table"]}
    assert ("freshness", "p95 at 10,000 rec/s") in measures
    assert ("predictor throughput", "batch 1024 (default)") in measures
    assert ("predictor REST", "p99, 8 clients") in measures
    assert ("promotion latency", "p95 publish -> served") in measures

"""The README's first command, `make demo`, end to end (a shorter stream than its default), run once for both tests."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COUNT = 4000  # records streamed, and as many fed to the predictor


@dataclass(frozen=True)
class Demo:
    work: Path
    out: str

    def summary(self, component: str) -> dict[str, Any]:
        return json.loads((self.work / f"{component}-summary.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    work = tmp_path_factory.mktemp("demo") / "demo"
    result = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_ARGS=--count {COUNT} --rate 1000 --workdir {work}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Demo(work, result.stdout)


def test_make_demo_runs_the_pipeline_and_cleans_up(demo: Demo) -> None:
    out, work = demo.out, demo.work
    assert "records trained" in out and "model versions published" in out and "final accuracy" in out
    assert (work / "reports" / "accuracy.png").stat().st_size > 1000
    assert list((work / "models" / "streamtrain").iterdir())
    # Every process it started is gone: the broker's port is closed, no component is left.
    port = int(re.search(r"broker up at 127\.0\.0\.1:(\d+)", out).group(1))  # type: ignore[union-attr]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert _processes_with_env(str(work)) == []


def test_make_demo_predicts_every_fed_record_with_a_promoted_version(demo: Demo) -> None:
    predicted, evaluated = demo.summary("predictor"), demo.summary("evaluator")
    # Every record fed to the input topic scored exactly once (the susy source has no bad rows).
    assert predicted["records_predicted"] == COUNT and predicted["records_dead_lettered"] == 0, predicted
    assert sum(predicted["predictions_per_version"].values()) == COUNT
    # The gate promoted what was served: the newest promoted version at the end, and every version that scored.
    promoted, rejected = evaluated["promoted"], {int(v) for v in evaluated["rejected"]}
    assert promoted and predicted["serving_version"] == max(promoted), (predicted, evaluated["verdicts"])
    assert {int(v) for v in predicted["predictions_per_version"]} <= set(promoted) - rejected
    assert evaluated["gate"]["min_records"] == 300  # the demo's setting for 1000 records/s, not the default 500
    # One REST :predict request, answered with one probability per row.
    rest = json.loads((demo.work / "rest-predict.json").read_text())
    rows = rest["request"]["instances"]
    assert rest["status"] == 200 and len(rows) == 4 and all(len(row) == 18 for row in rows), rest
    assert len(rest["response"]["predictions"]) == len(rows)
    assert all(len(p) == 1 and 0.0 <= p[0] <= 1.0 for p in rest["response"]["predictions"])
    # ... and the summary table says so.
    assert _row(demo.out, "records predicted / dead-lettered") == f"{COUNT:,} / 0"
    assert _row(demo.out, "version served by the predictor") == f"{max(promoted)} (promoted)"
    assert _row(demo.out, "predictor REST port") == str(rest["port"])
    assert _row(demo.out, "REST :predict rows -> predictions") == "4 -> 4 (HTTP 200)"


def _row(out: str, what: str) -> str:
    """The value of the summary table's row `what`."""
    line = next((line for line in out.splitlines() if f" {what} " in line), None)
    assert line is not None, f"no row {what!r} in:\n{out}"
    return re.split(r"[│|┃]", line)[2].strip()


def _processes_with_env(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found

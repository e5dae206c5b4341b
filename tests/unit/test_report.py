"""`streamtrain report` on evaluator rows that carry the quality gate's verdicts: the table of promotions and
rejections, their marks on the accuracy plot, and the same from the evaluator's CSV."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # the Agg backend: tests/conftest.py sets MPLBACKEND
import numpy as np

from streamtrain import report
from streamtrain.evaluator import plot
from streamtrain.service.config import ReportSettings

T0 = 1_700_000_000_000
REJECTED = "accuracy 0.410 (500 records) is 0.500 worse than the promoted 0.910 (tolerance 0.02)"


def verdict(version: int, decision: str, value: float, reason: str, at_s: float) -> dict[str, Any]:
    return {"ts_ms": T0 + int(at_s * 1000), "version": version, "decision": decision, "metric": "accuracy",
            "value": value, "records": 500, "reason": reason}


def rows() -> list[dict[str, Any]]:
    """Evaluator rows as the metrics topic holds them: each verdict once, when it was learnt of; a second replica
    (its own rows) repeats the verdicts it learnt of too."""
    out = []
    for i in range(20):
        out.append({"component": "evaluator", "ts_ms": T0 + i * 1000, "records_evaluated": 500 * (i + 1),
                    "model_version": 1 + i // 7, "accuracy": 0.9 - (0.4 if 7 <= i < 14 else 0), "loss": 0.3,
                    "auc": 0.95, "records_per_second": 500.0, "lag": 0, "drift_events": 0,
                    "promoted_version": 1 if i < 15 else 3, "rejected_total": 0 if i < 9 else 1,
                    "pinned": 1 if i >= 18 else None, "serving_version": 1 if i < 15 or i >= 18 else 3,
                    "verdicts": []})
    out[3]["verdicts"] = [verdict(1, "promoted", 0.91, "accuracy 0.910 reaches the floor 0.6", 3)]
    out[9]["verdicts"] = [verdict(2, "rejected", 0.41, REJECTED, 9)]
    out[15]["verdicts"] = [verdict(3, "promoted", 0.9, "within 0.02 of the promoted 0.910", 15)]
    replica = {**out[10], "verdicts": [verdict(2, "rejected", 0.41, REJECTED, 9)], "ts_ms": T0 + 10_500}
    return [*out, replica]


def verdict_table(page: str) -> list[list[str]]:
    section = page.split("<h2>Promotions and rejections (quality gate)</h2>", 1)[1]
    table = section.split("</table>", 1)[0]
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)] for tr in re.findall(r"<tr[^>]*>(.*?)</tr>",
                                                                                                 table)[1:]]


def test_report_lists_promotions_and_rejections_from_metric_rows() -> None:
    data = report.split(rows())
    assert [(v["version"], v["decision"]) for v in data["verdicts"]] == [(1, "promoted"), (2, "rejected"),
                                                                         (3, "promoted")]
    page = report.render(data, {}, "run", "test rows")
    table = verdict_table(page)
    assert [r[1:4] for r in table] == [["1", "promoted", "accuracy"], ["2", "rejected", "accuracy"],
                                       ["3", "promoted", "accuracy"]]
    assert table[1][4] == "0.4100" and table[1][5] == "500" and table[1][6] == REJECTED
    assert "versions promoted</th><td>2<" in page and "versions rejected</th><td>1<" in page
    assert "version predictors served at the end</th><td>v1 (pinned)<" in page


def test_report_without_verdicts_says_so() -> None:
    plain = [{k: v for k, v in r.items() if k != "verdicts"} for r in rows()]
    page = report.render(report.split(plain), {}, "run", "test rows")
    assert "No verdict was reported" in page and "versions promoted</th><td>0<" in page


def test_verdicts_are_marked_on_the_accuracy_plot() -> None:
    data = report.split(rows())
    fig, ax = plt.subplots()
    try:
        report._verdict_marks(ax, T0, data)
        colours = [line.get_color() for line in ax.get_lines()]
        # a line and a symbol per verdict
        assert colours.count(plot.PROMOTED_MARK["color"]) == 4 and colours.count(plot.REJECTED_MARK["color"]) == 2
        symbols = [line for line in ax.get_lines() if line.get_marker() == plot.MARKERS["rejected"]]
        assert len(symbols) == 1 and np.asarray(symbols[0].get_xydata()).tolist() == [[9.0, 0.41]]
        assert [t.get_text() for t in ax.texts] == ["v1", "v2", "v3"]
    finally:
        plt.close(fig)
    images = report.plots(data)
    assert set(images) == {"accuracy", "throughput", "lag"} and all(len(v) > 1000 for v in images.values())


def test_the_evaluator_csv_carries_the_verdicts_to_the_report(tmp_path: Path) -> None:
    evaluator_rows = [r for r in rows() if r["ts_ms"] != T0 + 10_500]
    csv_path = tmp_path / "reports" / "accuracy.csv"
    plot.write_csv(csv_path, evaluator_rows)
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[-5:] == ["promoted_version", "rejected_total", "pinned", "serving_version", "verdicts"]
    back = report.read_csv(csv_path)
    assert back[9]["verdicts"] == evaluator_rows[9]["verdicts"] and back[0]["verdicts"] is None
    assert back[19]["pinned"] == 1 and back[0]["pinned"] is None and back[0]["ts_ms"] == T0
    plot.write_png(tmp_path / "reports" / "accuracy.png", evaluator_rows)  # the evaluator's own plot marks them too
    assert (tmp_path / "reports" / "accuracy.png").stat().st_size > 1000
    out = tmp_path / "report.html"
    summary = report.run(ReportSettings(csv_path=csv_path, output=out))
    assert summary["verdicts"] == 3
    page = out.read_text()
    assert [r[1:3] for r in verdict_table(page)] == [["1", "promoted"], ["2", "rejected"], ["3", "promoted"]]
    assert REJECTED in page and page.count("data:image/png;base64,") == 3

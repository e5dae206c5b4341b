"""The accuracy-over-time CSV and PNG the evaluator keeps up to date; its columns and the plots' marks (new model
versions, drifts, the quality gate's promotions and rejections) are also what `streamtrain report` reads and draws.

>>> rows = [{"model_version": 1}, {"model_version": 1}, {"model_version": 2}, {"last_version": 3}]
>>> [rows.index(r) for r in version_changes(rows)]
[2, 3]
>>> verdicts([{"verdicts": [{"version": 2, "decision": "rejected", "ts_ms": 5}]},
...           {"verdicts": [{"version": 2, "decision": "promoted", "ts_ms": 9}, {"version": 1, "ts_ms": 1}]}])
[{'version': 1, 'ts_ms': 1}, {'version': 2, 'decision': 'promoted', 'ts_ms': 9}]
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

COLUMNS = ["ts_ms", "records_evaluated", "model_version", "accuracy", "loss", "auc", "records_per_second", "lag",
           "drift_events",
           # The serving decisions as the evaluator knew them at the row: the newest promoted version, how many were
           # rejected, the pinned one, the one predictors serve (pinned, else newest promoted; None: the gate is off
           # or nothing is servable), and the verdicts it learnt of since its previous row (a JSON list in the CSV).
           "promoted_version", "rejected_total", "pinned", "serving_version", "verdicts"]
JSON_COLUMNS = {"verdicts"}  # written as JSON text in the CSV; every other column is a number
# A verdict's fields as rows, /history and the report carry them (a control-topic verdict event, trimmed).
VERDICT_FIELDS = ("ts_ms", "version", "decision", "metric", "value", "records", "reason")
# The marks every plot of a run draws (matplotlib axvline keywords).
VERSION_MARK: dict[str, Any] = {"color": "grey", "alpha": 0.35, "linewidth": 0.8, "linestyle": "--"}
DRIFT_MARK: dict[str, Any] = {"color": "tab:red", "alpha": 0.8, "linewidth": 1.8}
PROMOTED_MARK: dict[str, Any] = {"color": "darkgreen", "alpha": 0.7, "linewidth": 1.2, "linestyle": ":"}
REJECTED_MARK: dict[str, Any] = {"color": "darkorange", "alpha": 0.9, "linewidth": 1.2, "linestyle": "-."}
MARKERS = {"promoted": "^", "rejected": "X"}  # the symbol drawn on a verdict's mark


def version_changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows at which a new model version shows (an evaluator's model_version or a trainer's last_version)."""
    changes, previous = [], None
    for row in rows:
        version = row.get("model_version", row.get("last_version"))
        if version is not None and previous is not None and version != previous:
            changes.append(row)
        previous = version if version is not None else previous
    return changes


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verdicts the rows carry, one per version (the newest, as the compacted control topic keeps it), in time
    order: replicas and restarts may repeat a verdict, a version may be judged again."""
    newest: dict[Any, dict[str, Any]] = {}
    for row in rows:
        for v in row.get("verdicts") or []:
            if isinstance(v, dict) and v.get("version") is not None:
                seen = newest.get(v["version"])
                if seen is None or (v.get("ts_ms") or 0) >= (seen.get("ts_ms") or 0):
                    newest[v["version"]] = v
    return sorted(newest.values(), key=lambda v: (v.get("ts_ms") or 0, v["version"]))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, **{k: json.dumps(r[k]) if r.get(k) else None for k in JSON_COLUMNS}} for r in rows)
    tmp.replace(path)


def write_png(path: Path, rows: list[dict[str, Any]], title: str = "streamtrain: evaluator accuracy") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get("accuracy") is not None]
    if not points:
        return
    x = [r["records_evaluated"] for r in points]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.plot(x, [r["accuracy"] for r in points], label="accuracy (sliding window)", color="tab:blue")
    if any(r.get("auc") is not None for r in points):
        ax.plot(x, [r["auc"] if r.get("auc") is not None else float("nan") for r in points],
                label="AUC", color="tab:green", alpha=0.7)
    for r in version_changes(points):
        ax.axvline(r["records_evaluated"], **VERSION_MARK)
    drifts = 0
    for r in points:  # red lines: the evaluator learnt of a drift the trainer detected
        if (r.get("drift_events") or 0) > drifts:
            ax.axvline(r["records_evaluated"], **DRIFT_MARK)
        drifts = max(drifts, r.get("drift_events") or 0)
    for r in points:  # the quality gate's verdicts, where the evaluator reported them
        for v in r.get("verdicts") or []:
            decision = v.get("decision")
            if decision in MARKERS:
                ax.axvline(r["records_evaluated"], **(PROMOTED_MARK if decision == "promoted" else REJECTED_MARK))
                ax.plot([r["records_evaluated"]], [0.03], MARKERS[decision], color=PROMOTED_MARK["color"]
                        if decision == "promoted" else REJECTED_MARK["color"], markersize=7)
    ax.set_xlabel("test records evaluated")
    ax.set_ylabel("score")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title} (grey lines: new model versions, red: drift, green: promoted, orange: rejected)",
                 fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)

"""The accuracy-over-time CSV and PNG the evaluator keeps up to date; its columns and the plots' marks (new model
versions, drifts) are also what `streamtrain report` reads and draws.

>>> rows = [{"model_version": 1}, {"model_version": 1}, {"model_version": 2}, {"last_version": 3}]
>>> [rows.index(r) for r in version_changes(rows)]
[2, 3]
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = ["ts_ms", "records_evaluated", "model_version", "accuracy", "loss", "auc", "records_per_second", "lag",
           "drift_events"]
# The marks every plot of a run draws (matplotlib axvline keywords).
VERSION_MARK: dict[str, Any] = {"color": "grey", "alpha": 0.35, "linewidth": 0.8, "linestyle": "--"}
DRIFT_MARK: dict[str, Any] = {"color": "tab:red", "alpha": 0.8, "linewidth": 1.8}


def version_changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows at which a new model version shows (an evaluator's model_version or a trainer's last_version)."""
    changes, previous = [], None
    for row in rows:
        version = row.get("model_version", row.get("last_version"))
        if version is not None and previous is not None and version != previous:
            changes.append(row)
        previous = version if version is not None else previous
    return changes


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
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
    ax.set_xlabel("test records evaluated")
    ax.set_ylabel("score")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title} (grey lines: new model versions, red: drift)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)

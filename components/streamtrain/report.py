"""`streamtrain report`: one self-contained HTML file (PNG plots embedded) from a run's metrics.

Input is either the metrics topic (every message the trainer and the evaluators published: progress
reports and drift events) or the evaluator's accuracy CSV. The report shows accuracy over time with
model versions, drift events and the quality gate's promotions and rejections marked, throughput and
consumer lag, plus a table of the drifts and one of the verdicts (from the evaluator's rows, which carry
each verdict once and the serving decisions at the time).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

from streamtrain.evaluator import plot
from streamtrain.service.config import ReportSettings

log = logging.getLogger("streamtrain.report")

NUMERIC = set(plot.COLUMNS) - plot.JSON_COLUMNS  # the evaluator's CSV columns that are numbers (the rest: JSON)


def read_topic(settings: ReportSettings) -> list[dict[str, Any]]:
    """Every JSON message on the metrics topic, from the first offset up to now.

    A partition is done once a message produced after reading began arrives (the components may
    still be publishing), or when it stays quiet for idle_seconds. Watermarks are not used: some
    brokers report them inexactly.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from streamtrain.kafka import clients

    consumer = clients.consumer(settings, "report", clients.reader_group(settings, "report", "metrics"))
    try:
        topic = settings.metrics_topic
        parts = clients.partitions_of(consumer, topic, timeout=settings.read_timeout_seconds)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        messages: list[dict[str, Any]] = []
        began_ms = int(time.time() * 1000)
        started = time.monotonic()
        last = dict.fromkeys(parts, started)
        pending = set(parts)
        while pending:
            now = time.monotonic()
            pending = {p for p in pending if now - last[p] < settings.idle_seconds}
            if now - started > settings.read_timeout_seconds:
                log.warning("stopped reading the metrics topic at the time limit", extra={"messages": len(messages)})
                break
            for msg in consumer.consume(num_messages=10_000, timeout=0.2):
                if msg.error() is not None:
                    continue
                partition = msg.partition() or 0
                last[partition] = time.monotonic()
                if msg.timestamp()[1] >= began_ms:
                    pending.discard(partition)
                    continue
                try:
                    value = json.loads(msg.value() or b"")
                except (TypeError, ValueError):
                    continue
                if isinstance(value, dict):
                    messages.append(value)
        return messages
    finally:
        consumer.close()


def read_csv(path: Path) -> list[dict[str, Any]]:
    """The evaluator's accuracy CSV as metric messages (component evaluator)."""
    rows = []
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {"component": "evaluator"}
            for key, value in raw.items():
                if key in NUMERIC:
                    row[key] = _number(value) if value not in ("", None) else None
                elif key in plot.JSON_COLUMNS:
                    try:
                        row[key] = json.loads(value) if value else None
                    except ValueError:
                        row[key] = None
                else:
                    row[key] = value
            rows.append(row)
    return rows


def _number(text: str) -> int | float:
    """A CSV cell as the evaluator wrote it: an int (versions, counts, times) or a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def split(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Evaluator rows, trainer progress reports, drift events and the quality gate's verdicts, each in time order."""
    evaluator, trainer, drifts = [], [], {}
    for m in messages:
        if m.get("event") == "drift":
            drifts[(m.get("id"), m.get("records_trained"), m.get("model_name"))] = m
        elif m.get("component") == "evaluator" and m.get("ts_ms"):
            evaluator.append(m)
        elif m.get("component") == "trainer" and m.get("ts_ms") and "event" not in m:
            trainer.append(m)
    if not drifts:  # a CSV only has the count the evaluator knew of: mark where it grew
        known = 0.0
        for r in evaluator:
            count = r.get("drift_events") or 0
            if count > known:
                drifts[(count, r["ts_ms"], None)] = {"id": int(count), "ts_ms": r["ts_ms"], "records_trained": None,
                                                     "detector": "?", "reaction": "?", "seen_by": "evaluator"}
            known = max(known, count)
    return {"evaluator": sorted(evaluator, key=lambda r: r["ts_ms"]),
            "trainer": sorted(trainer, key=lambda r: r["ts_ms"]),
            "drifts": sorted(drifts.values(), key=lambda r: r.get("ts_ms") or 0),
            "verdicts": plot.verdicts(evaluator)}


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def _marks(ax: Any, t0: float, data: dict[str, list[dict[str, Any]]], label: bool) -> None:
    for i, r in enumerate(plot.version_changes(data["evaluator"] or data["trainer"])):
        name = "new model version" if label and not i else None
        ax.axvline((r["ts_ms"] - t0) / 1000, **plot.VERSION_MARK, label=name)
    for i, event in enumerate(e for e in data["drifts"] if e.get("ts_ms")):
        ax.axvline((event["ts_ms"] - t0) / 1000, **plot.DRIFT_MARK, label="drift detected" if label and not i else None)


def _verdict_marks(ax: Any, t0: float, data: dict[str, list[dict[str, Any]]]) -> None:
    """Promotions and rejections on the accuracy plot, within its time span: a line, and a symbol at the value the
    version was judged with (when the gate's metric is on the plot's 0..1 scale) or at the bottom."""
    stamps = [r["ts_ms"] for r in data["evaluator"] + data["trainer"]]
    if not stamps:
        return
    labelled = set()
    for v in data.get("verdicts", []):
        decision, ts = v.get("decision"), v.get("ts_ms")
        if decision not in plot.MARKERS or not ts or not min(stamps) <= ts <= max(stamps):
            continue
        style = plot.PROMOTED_MARK if decision == "promoted" else plot.REJECTED_MARK
        x = (ts - t0) / 1000
        ax.axvline(x, **style)
        value = v.get("value")
        y = float(value) if v.get("metric") in ("accuracy", "auc") and isinstance(value, (int, float)) else 0.03
        ax.plot([x], [y], plot.MARKERS[decision], color=style["color"], markersize=8, linestyle="none",
                label=None if decision in labelled else f"{decision} by the quality gate")
        ax.annotate(f"v{v.get('version')}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=7,
                    color=style["color"])
        labelled.add(decision)


def plots(data: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Base64 PNGs: accuracy (with marks), throughput, lag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev, tr = data["evaluator"], data["trainer"]
    stamps = [r["ts_ms"] for r in ev + tr] + [d["ts_ms"] for d in data["drifts"] if d.get("ts_ms")]
    t0 = min(stamps) if stamps else 0.0

    def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
        pairs = [((r["ts_ms"] - t0) / 1000, r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pairs], [float(p[1]) for p in pairs]

    out = {}
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for rows, key, label, style in ((ev, "accuracy", "evaluator accuracy (test topic, sliding window)", "-"),
                                    (ev, "auc", "evaluator AUC", "-"),
                                    (tr, "window_accuracy", "trainer prequential accuracy (last 2,000)", ":")):
        x, y = series(rows, key)
        if x:
            ax.plot(x, y, style, label=label, linewidth=1.6)
    _marks(ax, t0, data, label=True)
    _verdict_marks(ax, t0, data)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("seconds since the first metric")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Accuracy over time (grey: new model versions, red: drift detected, green: promoted, "
                 "orange: rejected)", fontsize=10)
    fig.tight_layout()
    out["accuracy"] = _png(fig)
    plt.close(fig)

    for name, key, title, unit in (("throughput", "records_per_second", "Throughput", "records/s"),
                                   ("lag", "lag", "Consumer lag", "records behind")):
        fig, ax = plt.subplots(figsize=(10, 3))
        for rows, who in ((tr, "trainer"), (ev, "evaluator")):
            x, y = series(rows, key)
            if x:
                ax.plot(x, y, label=who, linewidth=1.4)
        _marks(ax, t0, data, label=False)
        ax.set_xlabel("seconds since the first metric")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(title)
        fig.tight_layout()
        out[name] = _png(fig)
        plt.close(fig)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _clock(ts_ms: Any) -> str:
    return time.strftime("%H:%M:%S", time.localtime((ts_ms or 0) / 1000))


def _serving(last_ev: dict[str, Any]) -> Any:
    """The version predictors served at the evaluator's last row, and why."""
    version, pinned = last_ev.get("serving_version"), last_ev.get("pinned")
    if version is None:
        return None if pinned is None else f"none (pinned v{pinned} is not in the store)"
    return f"v{version} (pinned)" if pinned is not None else f"v{version} (newest promoted)"


def render(data: dict[str, list[dict[str, Any]]], images: dict[str, str], title: str, source: str) -> str:
    ev, tr, drifts = data["evaluator"], data["trainer"], data["drifts"]
    verdicts = data.get("verdicts", [])
    last_ev = ev[-1] if ev else {}
    last_tr = tr[-1] if tr else {}
    accuracies = [r["accuracy"] for r in ev if r.get("accuracy") is not None]
    stamps = [r["ts_ms"] for r in ev + tr]
    summary = [
        ("source", source),
        ("time span (s)", round((max(stamps) - min(stamps)) / 1000, 1) if stamps else None),
        ("records trained", last_tr.get("records_trained")),
        ("records evaluated", last_ev.get("records_evaluated")),
        ("model versions", last_tr.get("last_version") or last_ev.get("model_version")),
        ("trainer prequential accuracy (all records)", last_tr.get("prequential_accuracy")),
        ("final evaluator accuracy (window)", last_ev.get("accuracy")),
        ("best evaluator accuracy (window)", max(accuracies) if accuracies else None),
        ("final evaluator AUC (window)", last_ev.get("auc")),
        ("drift events", len(drifts)),
        ("versions promoted", sum(v.get("decision") == "promoted" for v in verdicts)),
        ("versions rejected", sum(v.get("decision") == "rejected" for v in verdicts)),
        ("version predictors served at the end", _serving(last_ev)),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in summary)
    drift_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in (
            d.get("id"), _clock(d.get("ts_ms")),
            d.get("records_trained"), d.get("detector"), d.get("reaction"), d.get("error_before"),
            d.get("error_after"))) + "</tr>" for d in drifts)
    drift_table = (f"<table><tr><th>#</th><th>time</th><th>at record</th><th>detector</th><th>reaction</th>"
                   f"<th>error before</th><th>error after</th></tr>{drift_rows}</table>" if drifts
                   else "<p>No drift was reported.</p>")
    verdict_rows = "".join(
        f'<tr class="{html.escape(str(v.get("decision")))}">' + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in (
            _clock(v.get("ts_ms")), v.get("version"), v.get("decision"), v.get("metric"), v.get("value"),
            v.get("records"), v.get("reason") or "")) + "</tr>" for v in verdicts)
    verdict_table = (f"<table><tr><th>time</th><th>version</th><th>decision</th><th>metric</th><th>value</th>"
                     f"<th>records</th><th>reason</th></tr>{verdict_rows}</table>" if verdicts
                     else "<p>No verdict was reported (the quality gate was off, or judged no version).</p>")
    figures = "".join(f'<figure><img alt="{name}" src="data:image/png;base64,{data_}"></figure>'
                      for name, data_ in images.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1060px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
th, td {{ text-align: left; padding: 3px 14px 3px 0; border-bottom: 1px solid #eee; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
figure {{ margin: 12px 0; }}
tr.promoted td:nth-child(3) {{ color: #1a7f37; }}
tr.rejected td:nth-child(3) {{ color: #c05600; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Written {html.escape(time.strftime("%Y-%m-%d %H:%M:%S %Z"))} by <code>streamtrain report</code>.</p>
<h2>Summary</h2><table>{rows}</table>
<h2>Accuracy, throughput and lag over time</h2>{figures}
<h2>Drift events</h2>{drift_table}
<h2>Promotions and rejections (quality gate)</h2>{verdict_table}
</body></html>
"""


def run(settings: ReportSettings) -> dict[str, Any]:
    if settings.csv_path is not None:
        messages, source = read_csv(settings.csv_path), str(settings.csv_path)
    else:
        messages = read_topic(settings)
        source = f"topic {settings.metrics_topic} on {settings.bootstrap_servers}"
    data = split(messages)
    if not data["evaluator"] and not data["trainer"]:
        raise ValueError(f"no metrics found in {source}")
    page = render(data, plots(data), settings.title, source)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = settings.output.with_name(settings.output.name + ".tmp")
    tmp.write_text(page)
    tmp.replace(settings.output)
    summary = {"output": str(settings.output), "messages": len(messages), "evaluator_rows": len(data["evaluator"]),
               "trainer_reports": len(data["trainer"]), "drift_events": len(data["drifts"]),
               "verdicts": len(data["verdicts"]), "bytes": len(page)}
    log.info("report written", extra=summary)
    return summary

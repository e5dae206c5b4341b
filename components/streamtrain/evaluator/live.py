"""The evaluator's live page: `/` (one self-contained HTML file) refreshing itself from `/history`.

/history is JSON: the accuracy/loss/AUC rows over time (thinned to at most MAX_POINTS), the model
versions with when they were loaded, the drift events the trainer reported (read from the versions'
manifests, so the evaluator needs nothing beyond the model volume it already reads), and the
evaluator's records/s and consumer lag. The page draws them as inline SVG; it loads nothing else.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from streamtrain.service.http import Route

if TYPE_CHECKING:
    from streamtrain.evaluator.main import Evaluator
    from streamtrain.store.loaded import LoadedModel

LAG = Gauge("streamtrain_evaluator_lag_records", "Test records on the broker not yet evaluated (this replica)")
DRIFTS = Gauge("streamtrain_evaluator_drift_events", "Drift events the trainer reported in the loaded versions")

MAX_POINTS = 1500


def page() -> bytes:
    return resources.files("streamtrain.evaluator").joinpath("static/index.html").read_bytes()


def consumer_lag(reader: Any, next_offsets: dict[int, int]) -> int | None:
    """Records behind the high watermarks of the partitions this replica has read (None before any)."""
    marks: dict[int, int] = getattr(reader, "high_watermarks", None) or {}
    known = [p for p in marks if p in next_offsets]
    if not known:
        return None
    return sum(max(marks[p] - next_offsets[p], 0) for p in known)


class Live:
    """What the page shows beyond the evaluator's rows: versions, drift events, lag."""

    def __init__(self) -> None:
        self.drift_events: dict[tuple[int, int], dict[str, Any]] = {}  # (id, records_trained) -> event
        self.versions: list[dict[str, Any]] = []
        self.lag: int | None = None
        self._seen_version: int | None = None

    def observe(self, current: LoadedModel | None, lag: int | None) -> dict[str, Any]:
        """Take in the current version's manifest and the lag; returns the fields for the metrics row."""
        self.lag = lag
        if lag is not None:
            LAG.set(lag)
        if current is not None and current.version != self._seen_version:
            self._seen_version = current.version
            manifest = current.manifest
            self.versions.append({"version": current.version, "ts_ms": current.loaded_at_ms,
                                  "records_trained": manifest.get("records_trained"),
                                  "trainer_lag": manifest.get("lag")})
            for event in manifest.get("drift_events") or []:
                if isinstance(event, dict) and "id" in event:
                    self.drift_events[(int(event["id"]), int(event.get("records_trained") or 0))] = event
            DRIFTS.set(len(self.drift_events))
        return {"lag": lag, "drift_events": len(self.drift_events)}

    def events(self) -> list[dict[str, Any]]:
        return sorted(self.drift_events.values(), key=lambda e: (e.get("ts_ms", 0), e.get("id", 0)))

    def status(self) -> dict[str, Any]:
        return {"lag": self.lag, "drift_events": len(self.drift_events)}

    def history(self, rows: list[dict[str, Any]], status: dict[str, Any]) -> dict[str, Any]:
        step = max(1, -(-len(rows) // MAX_POINTS))
        shown = rows[::step]
        if rows and shown[-1] is not rows[-1]:
            shown = [*shown, rows[-1]]
        return {"now_ms": int(time.time() * 1000), "rows": shown, "versions": self.versions[-500:],
                "drift_events": self.events(),
                "status": {k: status.get(k) for k in ("records_evaluated", "model_version", "accuracy", "loss",
                                                      "auc", "best_accuracy", "lag", "drift_events")}}


def routes(evaluator: Evaluator) -> dict[str, Route]:
    body = page()

    def history() -> tuple[int, str, bytes]:
        data = evaluator.live.history(list(evaluator.rows), evaluator.status())
        return 200, "application/json", json.dumps(data, default=str).encode()

    return {"/": lambda: (200, "text/html; charset=utf-8", body), "/history": history}

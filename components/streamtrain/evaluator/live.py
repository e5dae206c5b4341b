"""The evaluator's live page: `/` (one self-contained HTML file) refreshing itself from `/history`.

/history is JSON: the accuracy/loss/AUC rows over time (thinned to at most MAX_POINTS), the model
versions with when they were loaded, the drift events the trainer reported (read from the versions'
manifests, so the evaluator needs nothing beyond the model volume it already reads), the
evaluator's records/s and consumer lag, and the serving decisions its judge follows on the control
topic: every verdict (promoted or rejected, with its time, value, records and reason), the pinned
version and the version predictors serve (the pinned one, else the newest promoted one in the store,
as `--serve promoted` predictors choose). The page draws them as inline SVG; it loads nothing else.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from streamtrain.evaluator import plot
from streamtrain.service.http import Route
from streamtrain.serving import control
from streamtrain.store import model_store

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


def decisions_of(evaluator: Evaluator) -> tuple[control.Decisions | None, list[int]]:
    """The serving decisions the evaluator's judge follows and the versions in its store; (None, []) without a
    judge (--no-gate) or when the control topic could not be read (nothing is known then)."""
    judge = evaluator.judge
    if judge is None or judge.unavailable is not None:
        return None, []
    return judge.control.snapshot(), model_store.version_numbers(evaluator.s.model_dir, evaluator.s.model_name)


def verdicts_of(decisions: control.Decisions) -> list[dict[str, Any]]:
    """Every verdict in the decisions (the newest per version), trimmed to plot.VERDICT_FIELDS, in time order."""
    events = [*decisions.promoted.values(), *decisions.rejected.values()]
    return sorted(({k: e.get(k) for k in plot.VERDICT_FIELDS} for e in events),
                  key=lambda v: (v.get("ts_ms") or 0, v["version"]))


def serving_state(decisions: control.Decisions | None, available: list[int]) -> dict[str, Any]:
    """The decisions as a metrics row carries them (all None when they are not known)."""
    if decisions is None:
        return {"promoted_version": None, "rejected_total": None, "pinned": None, "serving_version": None}
    return {"promoted_version": max(decisions.promoted, default=None), "rejected_total": len(decisions.rejected),
            "pinned": decisions.pinned, "serving_version": decisions.serving(available, "promoted")}


class Live:
    """What the page shows beyond the evaluator's rows: versions, drift events, lag."""

    def __init__(self) -> None:
        self.drift_events: dict[tuple[int, int], dict[str, Any]] = {}  # (id, records_trained) -> event
        self.versions: list[dict[str, Any]] = []
        self.lag: int | None = None
        self._seen_version: int | None = None
        self._reported: dict[int, dict[str, Any]] = {}  # version -> its verdict as a metrics row carried it

    def observe(self, current: LoadedModel | None, lag: int | None, decisions: control.Decisions | None = None,
                available: list[int] | None = None, sent: bool = True) -> dict[str, Any]:
        """Take in the current version's manifest, the lag and the serving decisions (with the versions in the
        store); returns the fields for the metrics row: lag, drift count, the decisions (serving_state) and the
        verdicts not in an earlier sent row (the first has every verdict the control topic held). sent: the row
        is published; if not, its verdicts go in the next one."""
        new: list[dict[str, Any]] = []
        if decisions is not None:
            new = [v for v in verdicts_of(decisions) if self._reported.get(v["version"]) != v]
            if sent:
                self._reported.update((v["version"], v) for v in new)
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
        return {"lag": lag, "drift_events": len(self.drift_events), **serving_state(decisions, available or []),
                "verdicts": new}

    def events(self) -> list[dict[str, Any]]:
        return sorted(self.drift_events.values(), key=lambda e: (e.get("ts_ms", 0), e.get("id", 0)))

    def status(self) -> dict[str, Any]:
        return {"lag": self.lag, "drift_events": len(self.drift_events)}

    def history(self, rows: list[dict[str, Any]], status: dict[str, Any], decisions: control.Decisions | None = None,
                available: list[int] | None = None) -> dict[str, Any]:
        step = max(1, -(-len(rows) // MAX_POINTS))
        shown = rows[::step]
        if rows and shown[-1] is not rows[-1]:
            shown = [*shown, rows[-1]]
        return {"now_ms": int(time.time() * 1000), "rows": shown, "versions": self.versions[-500:],
                "drift_events": self.events(),
                "status": {k: status.get(k) for k in ("records_evaluated", "model_version", "accuracy", "loss",
                                                      "auc", "best_accuracy", "lag", "drift_events")},
                **self.serving(status.get("gate"), decisions, available or [])}

    @staticmethod
    def serving(gate: dict[str, Any] | None, decisions: control.Decisions | None,
                available: list[int]) -> dict[str, Any]:
        """/history's serving decisions. serving_by: "pinned" (an operator's pin) or "promoted" (the newest
        promoted version); None with serving None: nothing servable (a pinned version missing from the store too)."""
        if decisions is None:
            return {"gate": gate, "verdicts": [], "promoted": [], "rejected": [], "pinned": None, "pin": None,
                    "serving": None, "serving_by": None, "versions_in_store": available}
        serving = decisions.serving(available, "promoted")
        pin = decisions.pin_event
        return {"gate": gate, "verdicts": verdicts_of(decisions)[-500:], "promoted": sorted(decisions.promoted),
                "rejected": sorted(decisions.rejected), "pinned": decisions.pinned,
                "pin": {k: pin.get(k) for k in ("version", "action", "by", "ts_ms")} if pin else None,
                "serving": serving,
                "serving_by": "pinned" if decisions.pinned is not None else "promoted" if serving is not None else None,
                "versions_in_store": available}


def routes(evaluator: Evaluator) -> dict[str, Route]:
    body = page()

    def history() -> tuple[int, str, bytes]:
        data = evaluator.live.history(list(evaluator.rows), evaluator.status(), *decisions_of(evaluator))
        return 200, "application/json", json.dumps(data, default=str).encode()

    return {"/": lambda: (200, "text/html; charset=utf-8", body), "/history": history}

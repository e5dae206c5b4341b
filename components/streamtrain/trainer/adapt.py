"""What the trainer does around each test-then-train step to track a changing stream.

Per batch: sample weights from the class weights; recent records replayed from the bounded buffer
mixed in; the step itself (new records scored, everything trained on); the prequential errors fed to
the drift detector; on a drift, the configured reaction, an event, and an empty replay buffer.
Everything that must survive a restart (detector window, events, a learning-rate boost in progress,
class counts) is plain JSON for the checkpoint's `extra` (the replay buffer refills after a restart).
"""

from __future__ import annotations

import logging
import time
from typing import Any, TextIO

import numpy as np
from prometheus_client import Counter, Gauge

from streamtrain.metrics import log_loss
from streamtrain.service.config import TrainerSettings, parse_class_weight
from streamtrain.trainer import drift, pace, reactions
from streamtrain.trainer.learner import Learner
from streamtrain.trainer.replay import ReplayBuffer

log = logging.getLogger("streamtrain.trainer")

DRIFT_EVENTS = Counter("streamtrain_trainer_drift_events_total",
                       "Concept drifts detected on the prequential error stream")
LEARNING_RATE = Gauge("streamtrain_trainer_learning_rate",
                      "Learning rate in use (with --learning-rate auto it grows with the step; raised for a while "
                      "after a drift)")
REPLAY_RECORDS = Gauge("streamtrain_trainer_replay_records", "Records held in the replay buffer")
REHEARSALS = Counter("streamtrain_trainer_rehearsal_steps_total",
                     "Extra optimizer steps on recent records, taken while no batch was waiting")
ERROR_RATE = Gauge("streamtrain_trainer_drift_window_error", "Mean prequential error in the drift detector's window")

KEEP_EVENTS = 200  # drift events kept in the state, the manifests and /status


class ClassWeights:
    """Per-record sample weights from the class: fixed ones, or 'balanced' from running class counts
    (weight of class c = seen / (2 * seen_c), so both classes weigh the same in the loss)."""

    def __init__(self, spec: str) -> None:
        self.mode = parse_class_weight(spec)
        self.counts = [0, 0]

    @property
    def active(self) -> bool:
        return self.mode is not None

    def of(self, labels: np.ndarray) -> np.ndarray | None:
        """Weights for a batch (the balanced estimate first counts the batch's labels)."""
        if self.mode is None:
            return None
        positive = labels >= 0.5
        if self.mode == "balanced":
            self.counts[1] += int(positive.sum())
            self.counts[0] += int(labels.size - positive.sum())
            total = self.counts[0] + self.counts[1]
            w0, w1 = (total / (2.0 * max(c, 1)) for c in self.counts)
        else:
            assert isinstance(self.mode, dict)
            w0, w1 = self.mode.get(0, 1.0), self.mode.get(1, 1.0)
        return np.where(positive, w1, w0).astype(np.float32)

    def current(self) -> dict[str, float] | None:
        if self.mode is None:
            return None
        if self.mode == "balanced":
            total = sum(self.counts)
            return {str(c): total / (2.0 * max(n, 1)) for c, n in enumerate(self.counts)}
        assert isinstance(self.mode, dict)
        return {"0": self.mode.get(0, 1.0), "1": self.mode.get(1, 1.0)}


class Adaptation:
    def __init__(self, settings: TrainerSettings) -> None:
        s = self.s = settings
        self.detector = drift.make(s.drift_detector, s.drift_delta, s.drift_threshold, s.drift_min_change)
        self.replay = ReplayBuffer(s.replay_size, s.replay_ratio, s.seed) if s.replay_size else None
        # The recent records rehearsal steps draw from (trainer/main.py takes them when it would wait; only with
        # --batch-size auto).
        rehearsing = s.rehearsal_steps > 0 and s.batch_size == "auto"
        self.memory = ReplayBuffer(s.rehearsal_records, 0.0, s.seed + 1) if rehearsing else None
        self.rehearsal_steps = 0
        self.weights = ClassWeights(s.class_weight)
        self.events: list[dict[str, Any]] = []
        self.event_count = 0
        self.boost_left = 0  # batches still trained with the raised learning rate
        self.last_event_at: int | None = None  # records_trained when the last drift was reported
        self._lr: float | None = None
        self._step_records = pace.REFERENCE_STEP
        self._trace: TextIO | None = None

    # --- the step -----------------------------------------------------------------------------
    def step(self, learner: Learner, features: np.ndarray, labels: np.ndarray,
             position: int) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Test-then-train one batch; returns the prequential scores and a drift event (or None).

        position: records trained before this batch (the event says where in the stream it happened).
        """
        self._set_lr(learner, int(labels.size))
        weights = self.weights.of(labels)
        x, y, w, fresh = features, labels, weights, int(labels.size)
        if self.replay is not None:
            rx, ry = self.replay.sample(fresh)
            if ry.size:
                rw = _replay_weights(self.weights, ry)
                x, y = np.concatenate([features, rx]), np.concatenate([labels, ry])
                w = np.concatenate([weights if weights is not None else np.ones(fresh, np.float32), rw])
            self.replay.add(features, labels)
            REPLAY_RECORDS.set(len(self.replay))
        scores = learner.step(x, y, w, fresh)
        if self.memory is not None:
            self.memory.add(features, labels)
        if self.boost_left > 0:
            self.boost_left -= 1
        event = None
        if self.detector is not None:
            errors = (scores >= 0.5) != (labels >= 0.5)
            change = self.detector.update(errors)
            mean = getattr(self.detector, "mean", None)
            if mean is not None:
                ERROR_RATE.set(mean)
            end = position + fresh
            if change is not None and change.increase and self._may_report(end):
                event = self._react(learner, change, end)
        if self.s.trace_file is not None:
            self._write_trace(position, scores, labels, event)
        return scores, event

    def rehearse(self, learner: Learner, size: int) -> bool:
        """One extra optimizer step on `size` recent records (already scored and trained on once): more learning
        from the same records where the stream leaves time for it. False when there is nothing to rehearse."""
        if self.memory is None or len(self.memory) < size:
            return False
        x, y = self.memory.draw(size)
        learner.step(x, y, _replay_weights(self.weights, y), 0)
        self.rehearsal_steps += 1
        REHEARSALS.inc()
        return True

    def _write_trace(self, position: int, scores: np.ndarray, labels: np.ndarray,
                     event: dict[str, Any] | None) -> None:
        """One CSV line per batch: where it ends in the stream, its size, prequential errors and loss, whether a
        drift was reported, the learning rate used, and the errors record by record."""
        if self._trace is None:
            assert self.s.trace_file is not None
            self.s.trace_file.parent.mkdir(parents=True, exist_ok=True)
            new = not self.s.trace_file.exists() or self.s.trace_file.stat().st_size == 0
            self._trace = self.s.trace_file.open("a", buffering=1)
            if new:
                self._trace.write("records_trained,records,errors,loss_sum,drift,learning_rate,error_bits\n")
        wrong = (scores >= 0.5) != (labels >= 0.5)
        loss = float(log_loss(scores, labels).sum())
        bits = "".join("1" if e else "0" for e in wrong)  # one character a record: prequential error or not
        self._trace.write(f"{position + labels.size},{labels.size},{int(wrong.sum())},{loss:.6g},"
                          f"{int(event is not None)},{self._lr:.6g},{bits}\n")

    def _may_report(self, at: int) -> bool:
        if at < self.s.drift_warmup_records:
            return False
        return self.last_event_at is None or at - self.last_event_at >= self.s.drift_cooldown_records

    def _set_lr(self, learner: Learner, step: int | None = None) -> None:
        """The learning rate for a step of `step` records (default: the last step's): --learning-rate auto grows
        with the step (trainer/pace.py), raised for a while after a drift with --drift-reaction boost-lr."""
        if step is not None:
            self._step_records = step
        scale = pace.learning_rate_scale(self._step_records) if self.s.learning_rate == "auto" else 1.0
        boost = self.s.drift_lr_boost if self.boost_left > 0 else 1.0
        wanted = self.s.base_learning_rate() * scale * boost
        if wanted != self._lr:
            learner.set_learning_rate(wanted)
            self._lr = wanted
            LEARNING_RATE.set(wanted)

    def _react(self, learner: Learner, change: drift.Change, at: int) -> dict[str, Any]:
        reaction = self.s.drift_reaction
        detail: dict[str, Any] = {}
        if reaction == "boost-lr":
            self.boost_left = self.s.drift_boost_batches
            self._set_lr(learner)
            detail = {"learning_rate": self._lr, "batches": self.s.drift_boost_batches}
        elif reaction == "reset-optimizer":
            detail = {"variables_zeroed": reactions.reset_optimizer(learner.optimizer)}
        elif reaction == "reinit-output":
            seed = self.s.seed + self.event_count + 1
            detail = {"layer": reactions.reinit_output(learner.model, learner.optimizer, seed)}
        if self.replay is not None:
            detail["replay_dropped"] = len(self.replay)
            self.replay.clear()
            REPLAY_RECORDS.set(0)
        if self.memory is not None:
            self.memory.clear()  # rehearsing the old concept would hold the new one back
        self.event_count += 1
        self.last_event_at = at
        event = {
            "id": self.event_count, "records_trained": at, "ts_ms": int(time.time() * 1000),
            "detector": self.s.drift_detector, "reaction": reaction,
            "error_before": round(change.before, 4), "error_after": round(change.after, 4),
            "records_before": change.records_before, "records_after": change.records_after, **detail,
        }
        self.events = [*self.events, event][-KEEP_EVENTS:]
        DRIFT_EVENTS.inc()
        log.warning("concept drift detected", extra=event)
        return event

    # --- state --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"detector": self.detector.to_json() if self.detector is not None else None,
                "events": self.events, "event_count": self.event_count, "boost_left": self.boost_left,
                "last_event_at": self.last_event_at, "class_counts": self.weights.counts}

    def load(self, data: dict[str, Any] | None) -> None:
        self._lr = None  # a restored optimizer carries its own: set ours at the next step
        if not data:
            return
        detector = data.get("detector")
        if self.detector is not None and detector and detector.get("kind") == self.detector.kind:
            self.detector.load(detector)
        self.events = list(data.get("events", []))[-KEEP_EVENTS:]
        self.event_count = int(data.get("event_count", len(self.events)))
        self.boost_left = int(data.get("boost_left", 0)) if self.s.drift_reaction == "boost-lr" else 0
        self.last_event_at = data.get("last_event_at")
        counts = data.get("class_counts")
        if isinstance(counts, list) and len(counts) == 2:
            self.weights.counts = [int(c) for c in counts]
        DRIFT_EVENTS.inc(0)

    def status(self) -> dict[str, Any]:
        return {"drift_detector": self.s.drift_detector, "drift_reaction": self.s.drift_reaction,
                "drift_events": self.event_count, "last_drift": self.events[-1] if self.events else None,
                "learning_rate": self._lr, "lr_boost_batches_left": self.boost_left,
                "replay_records": len(self.replay) if self.replay is not None else 0,
                "rehearsal_steps": self.rehearsal_steps,
                "class_weights": self.weights.current()}


def _replay_weights(weights: ClassWeights, labels: np.ndarray) -> np.ndarray:
    """Replayed records weigh like new ones of their class (without counting them again)."""
    if weights.mode is None:
        return np.ones(labels.size, np.float32)
    current = weights.current() or {}
    return np.where(labels >= 0.5, current.get("1", 1.0), current.get("0", 1.0)).astype(np.float32)

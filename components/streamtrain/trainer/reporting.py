"""What the trainer reports about its learning: prequential (test-then-train) and windowed quality, its rate and its
lag, as Prometheus gauges, on the metrics topic and in the log.

>>> from streamtrain.store.checkpoint import TrainerState
>>> state = TrainerState(preq_records=4, preq_correct=3, preq_loss_sum=2.0)
>>> quality(state, Window(10))["prequential_accuracy"]
0.75
>>> lag({0: 100, 1: 50}, {0: 90})
60
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Gauge

from streamtrain.metrics import Window
from streamtrain.store.checkpoint import TrainerState

PREQ_ACC = Gauge("streamtrain_trainer_prequential_accuracy", "Test-then-train accuracy since the start")
WINDOW_ACC = Gauge("streamtrain_trainer_window_accuracy", "Test-then-train accuracy over the recent window")
WINDOW_LOSS = Gauge("streamtrain_trainer_window_loss", "Test-then-train log loss over the recent window")
RATE = Gauge("streamtrain_trainer_records_per_second", "Records trained per second, last interval")
LAG = Gauge("streamtrain_trainer_lag_records", "Records in the train topic not yet trained on")


def quality(state: TrainerState, window: Window) -> dict[str, Any]:
    """Prequential accuracy and loss since the start, and the recent window's accuracy, loss and AUC."""
    recent = window.summary()
    seen = state.preq_records
    return {
        "prequential_accuracy": state.preq_correct / seen if seen else None,
        "prequential_loss": state.preq_loss_sum / seen if seen else None,
        "window_accuracy": recent["accuracy"], "window_loss": recent["loss"], "window_auc": recent["auc"],
    }


def lag(high_watermarks: dict[int, int] | None, done: dict[int, int]) -> int | None:
    """Records on the broker not yet trained on, from a reader's cached high watermarks (None: not known yet)."""
    if not high_watermarks:
        return None
    return sum(max(high - done.get(p, 0), 0) for p, high in high_watermarks.items())


class Rate:
    """Records trained per second since the previous call."""

    def __init__(self) -> None:
        self._mark = (time.monotonic(), 0)

    def __call__(self, records: int) -> float:
        now = time.monotonic()
        then, before = self._mark
        self._mark = (now, records)
        return (records - before) / max(now - then, 1e-9)


def export(values: dict[str, Any], rate: float, records_lag: int | None) -> None:
    """Bring the gauges up to date."""
    if values["prequential_accuracy"] is not None:
        PREQ_ACC.set(values["prequential_accuracy"])
    if values["window_accuracy"] is not None:
        WINDOW_ACC.set(values["window_accuracy"])
        WINDOW_LOSS.set(values["window_loss"])
    RATE.set(rate)
    if records_lag is not None:
        LAG.set(records_lag)

"""Concept-drift detection on the trainer's prequential error stream, one detector a module.

The test-then-train step tells, for every record, whether the model misclassified it *before* training on it: a 0/1
error stream. A detector reads it a batch at a time and says when the error rate has risen, which is how a concept
change shows up to an online learner. What the trainer then does about it lives in trainer/reactions.py.

>>> make("adwin").kind, make("page-hinkley").kind, make("none")
('adwin', 'page-hinkley', None)
"""

from __future__ import annotations

from streamtrain.trainer.drift.adwin import Adwin
from streamtrain.trainer.drift.base import Change, Detector
from streamtrain.trainer.drift.page_hinkley import PageHinkley

__all__ = ["Adwin", "Change", "Detector", "PageHinkley", "make"]


def make(kind: str, delta: float = 0.002, threshold: float = 80.0, min_change: float = 0.02,
         min_side: int = 64) -> Detector | None:
    if kind == "adwin":
        return Adwin(delta, min_side=min_side)
    if kind == "page-hinkley":
        return PageHinkley(threshold, min_change)
    if kind == "none":
        return None
    raise ValueError(f"unknown drift detector {kind!r}")

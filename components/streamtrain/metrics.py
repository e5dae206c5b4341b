"""Classification metrics over a stream: cumulative and sliding-window accuracy, log loss and AUC."""

from __future__ import annotations

from collections import deque

import numpy as np

EPS = 1e-7


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-record binary cross-entropy."""
    p = np.clip(probabilities.astype(np.float64), EPS, 1 - EPS)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def auc(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); None when one class is absent."""
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(probabilities, kind="mergesort")
    ranks = np.empty(labels.size, np.float64)
    sorted_p = probabilities[order]
    # Average ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_p)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [labels.size]))
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


class Window:
    """The last `size` predictions and labels, in chunks so a batch update is one append."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._chunks: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._count = 0

    def add(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        if labels.size == 0:
            return
        self._chunks.append((probabilities[-self.size:], labels[-self.size:]))
        self._count += min(labels.size, self.size)
        while self._count - self._chunks[0][1].size >= self.size:
            self._count -= self._chunks.popleft()[1].size

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._chunks:
            return np.zeros(0), np.zeros(0)
        p = np.concatenate([c[0] for c in self._chunks])[-self.size:]
        y = np.concatenate([c[1] for c in self._chunks])[-self.size:]
        return p, y

    def summary(self) -> dict[str, float | int | None]:
        p, y = self.arrays()
        if y.size == 0:
            return {"records": 0, "accuracy": None, "loss": None, "auc": None}
        return {
            "records": int(y.size),
            "accuracy": float(((p >= 0.5) == (y >= 0.5)).mean()),
            "loss": float(log_loss(p, y).mean()),
            "auc": auc(p, y),
        }


class Totals:
    """Cumulative counts since the start (or since a model version was loaded)."""

    def __init__(self) -> None:
        self.records = 0
        self.correct = 0
        self.loss_sum = 0.0

    def add(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        self.records += int(labels.size)
        self.correct += int(((probabilities >= 0.5) == (labels >= 0.5)).sum())
        self.loss_sum += float(log_loss(probabilities, labels).sum())

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.records if self.records else None

    @property
    def loss(self) -> float | None:
        return self.loss_sum / self.records if self.records else None

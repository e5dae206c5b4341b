"""Concept-drift detection on the trainer's prequential error stream, and the reactions to a drift.

The test-then-train step tells, for every record, whether the model misclassified it *before*
training on it: a 0/1 error stream. A detector reads it a batch at a time and says when the error
rate has risen, which is how a concept change shows up to an online learner:

- ADWIN (Bifet & Gavaldà, "Learning from time-changing data with adaptive windowing", SDM 2007):
  a window of recent errors kept as an exponential histogram of buckets (one bucket per batch at the
  newest end, merged pairwise further back). Whenever an older and a newer part of the window have
  means further apart than the bound ε_cut (from the variance of the window and the confidence δ),
  the older part is dropped. A cut where the newer error is higher is a drift; a cut where it is
  lower (the model got better) only shrinks the window.
- Page-Hinkley: the cumulative deviation of the error from its running mean, less a tolerance δ;
  an alarm when it climbs more than λ above its lowest point.

Both keep small state that is plain JSON, so it goes into the trainer's checkpoint.
Reactions act on a Learner: raise the learning rate for a while (done by the caller, which counts
the batches), zero the optimizer's state, or re-initialise the output layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np


@dataclass(frozen=True)
class Change:
    """A significant change of the error rate: `before` over `records_before`, `after` over `records_after`."""

    before: float
    after: float
    records_before: int
    records_after: int

    @property
    def increase(self) -> bool:
        return self.after > self.before


class Detector(Protocol):
    kind: str

    def update(self, errors: np.ndarray) -> Change | None: ...

    def to_json(self) -> dict[str, Any]: ...

    def load(self, data: dict[str, Any]) -> None: ...


# A bucket: [level, records, mean, m2] where m2 is the sum of squared deviations from the mean.
Bucket = list[float]


def _merge(a: Bucket, b: Bucket) -> Bucket:
    """Two adjacent buckets as one (Chan et al.'s pairwise update of mean and m2)."""
    n = a[1] + b[1]
    delta = b[2] - a[2]
    return [a[0] + 1, n, a[2] + delta * b[1] / n, a[3] + b[3] + delta * delta * a[1] * b[1] / n]


class Adwin:
    """ADWIN over batches of errors (values in [0, 1]); `update` returns the change it cut at, if any.

    delta: confidence; the chance of a false cut on a stationary stream is at most about delta per
    check. min_side: records each side of a cut must hold. per_level: buckets kept at each merge level
    (more = finer cut points further back). max_records: the window never grows beyond this.
    """

    kind = "adwin"

    def __init__(self, delta: float = 0.002, min_side: int = 64, per_level: int = 5,
                 max_records: int = 1_000_000) -> None:
        if not 0 < delta < 1:
            raise ValueError("delta must be in (0, 1)")
        self.delta = delta
        self.min_side = min_side
        self.per_level = per_level
        self.max_records = max_records
        self.buckets: list[Bucket] = []  # oldest first
        self.seen = 0

    @property
    def width(self) -> int:
        return int(sum(b[1] for b in self.buckets))

    @property
    def mean(self) -> float | None:
        width = self.width
        return sum(b[1] * b[2] for b in self.buckets) / width if width else None

    def update(self, errors: np.ndarray) -> Change | None:
        x = np.asarray(errors, np.float64).ravel()
        if x.size == 0:
            return None
        self.seen += int(x.size)
        mean = float(x.mean())
        self.buckets.append([0, float(x.size), mean, float(((x - mean) ** 2).sum())])
        self._compress()
        while len(self.buckets) > 1 and self.width > self.max_records:
            self.buckets.pop(0)
        return self._shrink()

    def _compress(self) -> None:
        """Keep at most per_level buckets of each level: merge the two oldest of a full level."""
        level = 0
        while True:
            at_level = [i for i, b in enumerate(self.buckets) if b[0] == level]
            if not at_level:
                return
            if len(at_level) > self.per_level:
                i = at_level[0]
                self.buckets[i:i + 2] = [_merge(self.buckets[i], self.buckets[i + 1])]
            level += 1

    def _cuts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For every boundary between buckets: older size and mean, newer size and mean, and whether it cuts."""
        b = np.asarray(self.buckets, np.float64)
        n, mu, m2 = b[:, 1], b[:, 2], b[:, 3]
        total = n.sum()
        grand = float((n * mu).sum() / total)
        variance = float((m2.sum() + (n * (mu - grand) ** 2).sum()) / total)
        n0 = np.cumsum(n)[:-1]
        s0 = np.cumsum(n * mu)[:-1]
        n1 = total - n0
        mu0 = s0 / n0
        mu1 = (grand * total - s0) / n1
        # ε_cut with δ' = δ / ln(n): sqrt(2/m · σ² · ln(2/δ')) + 2/(3m) · ln(2/δ'), 1/m = 1/n0 + 1/n1.
        log_term = math.log(2.0 * math.log(max(total, 3.0)) / self.delta)
        inv_m = 1.0 / n0 + 1.0 / n1
        epsilon = np.sqrt(2.0 * inv_m * variance * log_term) + (2.0 / 3.0) * inv_m * log_term
        ok = (n0 >= self.min_side) & (n1 >= self.min_side)
        return n0, mu0, n1, mu1, ok & (np.abs(mu1 - mu0) > epsilon)

    def _shrink(self) -> Change | None:
        """Drop the oldest buckets while some cut holds; report the cut with the largest difference.

        On a rise the whole older side of that cut goes at once (it belongs to the old concept and
        would otherwise set off the same alarm again); on a fall buckets go one at a time, as in ADWIN.
        """
        change: Change | None = None
        while len(self.buckets) > 1:
            n0, mu0, n1, mu1, hits = self._cuts()
            if not hits.any():
                break
            j = int(np.argmax(np.where(hits, np.abs(mu1 - mu0), -1.0)))
            if change is None:
                change = Change(float(mu0[j]), float(mu1[j]), int(n0[j]), int(n1[j]))
            del self.buckets[: j + 1 if mu1[j] > mu0[j] else 1]
        return change

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "delta": self.delta, "seen": self.seen, "buckets": self.buckets}

    def load(self, data: dict[str, Any]) -> None:
        self.seen = int(data.get("seen", 0))
        self.buckets = [[float(v) for v in b] for b in data.get("buckets", [])]


class PageHinkley:
    """Page-Hinkley test for an increase of the mean error.

    threshold (λ): how far the cumulative deviation may climb above its minimum before an alarm;
    min_change (δ): deviations smaller than this are tolerated; min_records: no alarm before this many.
    After an alarm the test starts again from nothing.
    """

    kind = "page-hinkley"

    def __init__(self, threshold: float = 80.0, min_change: float = 0.02, min_records: int = 30) -> None:
        self.threshold = threshold
        self.min_change = min_change
        self.min_records = min_records
        self.seen = 0
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.cum = 0.0
        self.low = 0.0
        self.mean_at_low = 0.0  # the running mean when the cumulative deviation was lowest
        self.since_low = [0.0, 0]  # sum and count of the errors since then

    def update(self, errors: np.ndarray) -> Change | None:
        x = np.asarray(errors, np.float64).ravel()
        if x.size == 0:
            return None
        counts = self.n + np.arange(1, x.size + 1)
        means = (self.n * self.mean + np.cumsum(x)) / counts
        cum = self.cum + np.cumsum(x - means - self.min_change)
        low = np.minimum(self.low, np.minimum.accumulate(cum))
        alarms = np.flatnonzero((cum - low > self.threshold) & (counts >= self.min_records))
        t = int(alarms[0]) if alarms.size else x.size - 1
        # Where the lowest point up to t was reached: in this batch (index k) or before it (-1).
        new_lows = np.flatnonzero(cum[: t + 1] <= low[: t + 1])
        k = int(new_lows[-1]) if new_lows.size and cum[new_lows[-1]] < self.low else -1
        if k >= 0:
            mean_at_low, since = float(means[k]), [float(x[k + 1: t + 1].sum()), t - k]
        else:
            mean_at_low = self.mean_at_low
            since = [self.since_low[0] + float(x[: t + 1].sum()), int(self.since_low[1]) + t + 1]
        self.seen += t + 1
        if not alarms.size:
            self.n, self.mean, self.cum, self.low = int(counts[-1]), float(means[-1]), float(cum[-1]), float(low[-1])
            self.mean_at_low, self.since_low = mean_at_low, since
            return None
        records_since = int(since[1])
        change = Change(mean_at_low, since[0] / records_since if records_since else float(x[t]),
                        int(counts[t]) - records_since, records_since)
        self._reset()
        if t + 1 < x.size:  # the rest of the batch starts the new test
            self.update(x[t + 1:])
        return change

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "mean": self.mean, "cum": self.cum, "low": self.low,
                "mean_at_low": self.mean_at_low, "since_low": self.since_low, "seen": self.seen}

    def load(self, data: dict[str, Any]) -> None:
        self.n = int(data.get("n", 0))
        self.mean = float(data.get("mean", 0.0))
        self.cum = float(data.get("cum", 0.0))
        self.low = float(data.get("low", 0.0))
        self.mean_at_low = float(data.get("mean_at_low", 0.0))
        since = data.get("since_low", [0.0, 0])
        self.since_low = [float(since[0]), int(since[1])]
        self.seen = int(data.get("seen", 0))


def make(kind: str, delta: float = 0.002, threshold: float = 80.0, min_change: float = 0.02,
         min_side: int = 64) -> Detector | None:
    if kind == "adwin":
        return Adwin(delta, min_side=min_side)
    if kind == "page-hinkley":
        return PageHinkley(threshold, min_change)
    if kind == "none":
        return None
    raise ValueError(f"unknown drift detector {kind!r}")


# --- reactions ------------------------------------------------------------------------------------
def _is_learning_rate(optimizer: keras.optimizers.Optimizer, variable: Any) -> bool:
    lr = getattr(optimizer, "_learning_rate", None)
    return variable is lr or str(getattr(variable, "path", "")).endswith("learning_rate")


def reset_optimizer(optimizer: keras.optimizers.Optimizer) -> int:
    """Zero the optimizer's state (step count, moment estimates); the learning rate stays. Returns how many."""
    count = 0
    for variable in optimizer.variables:
        if _is_learning_rate(optimizer, variable):
            continue
        variable.assign(np.zeros(variable.shape, variable.dtype))
        count += 1
    return count


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer with trainable weights (looking inside a wrapped user model)."""
    layer: keras.layers.Layer = model
    while isinstance(layer, keras.Model):
        trainable = [sub for sub in layer.layers if sub.trainable_weights]
        if not trainable:
            raise ValueError("the model has no trainable layer")
        layer = trainable[-1]
    return layer


def _fresh_value(layer: keras.layers.Layer, variable: Any, seed: int) -> np.ndarray:
    shape = tuple(int(d) for d in variable.shape)
    dtype = variable.dtype
    for attribute, initializer_name in (("kernel", "kernel_initializer"), ("bias", "bias_initializer")):
        if variable is getattr(layer, attribute, None) and getattr(layer, initializer_name, None) is not None:
            template = getattr(layer, initializer_name)
            config = template.get_config()
            if "seed" in config:
                config["seed"] = seed
            return np.asarray(type(template).from_config(config)(shape, dtype=dtype))
    if len(shape) >= 2:
        return np.asarray(keras.initializers.GlorotUniform(seed=seed)(shape, dtype=dtype))
    return np.zeros(shape, dtype)


def reinit_output(model: keras.Model, optimizer: keras.optimizers.Optimizer, seed: int) -> str:
    """Re-initialise the output layer's weights (as when the model was built) and zero their optimizer
    moments; every other layer keeps what it learnt. Returns the layer's name."""
    layer = output_layer(model)
    for offset, variable in enumerate(layer.trainable_weights):
        variable.assign(_fresh_value(layer, variable, seed + offset))
        try:
            index = optimizer._get_variable_index(variable)
        except (AttributeError, KeyError):
            continue
        for slots in (getattr(optimizer, "_momentums", None), getattr(optimizer, "_velocities", None)):
            if slots:
                slots[index].assign(np.zeros(slots[index].shape, slots[index].dtype))
    return str(layer.name)

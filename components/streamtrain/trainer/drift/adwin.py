"""ADWIN (Bifet & Gavaldà, "Learning from time-changing data with adaptive windowing", SDM 2007), over batches.

A window of recent errors is kept as an exponential histogram of buckets (one bucket per batch at the newest end,
merged pairwise further back). Whenever an older and a newer part of the window have means further apart than the
bound ε_cut (from the variance of the window and the confidence δ), the older part is dropped. A cut where the newer
error is higher is a drift; a cut where it is lower (the model got better) only shrinks the window.

>>> import numpy as np
>>> detector = Adwin(delta=0.002)
>>> rng = np.random.default_rng(7)
>>> [detector.update((rng.random(256) < 0.1).astype(float)) for _ in range(40)].count(None)
40
>>> changes = [detector.update((rng.random(256) < 0.5).astype(float)) for _ in range(5)]
>>> change = next(c for c in changes if c is not None)
>>> change.increase, round(change.before, 2) < 0.15 < round(change.after, 2)
(True, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamtrain.trainer.drift.base import Change

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

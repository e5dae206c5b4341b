"""Page-Hinkley: the cumulative deviation of the error from its running mean, less a tolerance δ; an alarm when it
climbs more than λ above its lowest point. After an alarm the test starts again from nothing.

>>> import numpy as np
>>> detector = PageHinkley(threshold=80.0, min_change=0.02)
>>> rng = np.random.default_rng(7)
>>> [detector.update((rng.random(256) < 0.1).astype(float)) for _ in range(40)].count(None)
40
>>> changes = [detector.update((rng.random(256) < 0.5).astype(float)) for _ in range(5)]
>>> any(c is not None and c.increase for c in changes)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamtrain.trainer.drift.base import Change


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

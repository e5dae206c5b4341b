"""Lag-aware micro-batches: how many records each optimizer step takes, from how far the trainer is behind.

Online, each optimizer step is what the model learns from; fewer records a step means more steps a record. A
trainer that keeps up with its stream has time for small steps, so it takes them (``min_size`` records); one that
falls behind takes larger ones, which cost less per record, until it has caught up. The size is proportional to
the backlog (the records on the broker beyond the batch in hand): ``backlog / STEPS_BEHIND``, between the bounds.
At a stream rate the trainer can only follow with steps of ``s`` records, the backlog settles near
``STEPS_BEHIND * s`` records: a fraction of a second of the stream.

>>> pace = Pace(min_size=16, max_size=1024)
>>> pace.size(backlog=0), pace.size(backlog=4_000), pace.size(backlog=10_000_000)
(16, 125, 1024)
>>> Pace(min_size=16, max_size=1024, fixed=256).size(backlog=10_000_000)  # --batch-size 256: always 256
256
>>> pace.size(backlog=None)  # not known yet (no watermark): the smallest
16
>>> split(1024, 1016)  # a batch in steps of at most 1016 records, as even as can be
[(0, 512), (512, 1024)]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

# Steps the trainer may be behind before it takes larger ones.
STEPS_BEHIND = 32


@dataclass(frozen=True)
class Pace:
    min_size: int
    max_size: int
    fixed: int | None = None  # --batch-size N: every step takes N records, whatever the lag

    def size(self, backlog: int | None) -> int:
        """Records for the next optimizer step."""
        if self.fixed is not None:
            return self.fixed
        wanted = (backlog or 0) // STEPS_BEHIND
        return max(self.min_size, min(self.max_size, wanted))


def split(records: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of the steps that take `records` in steps of at most `size`, as even as can be (no step of a
    few leftover records, whose gradient would be as noisy as it is cheap)."""
    steps = max(1, -(-records // size))
    bounds = [round(i * records / steps) for i in range(steps + 1)]
    return list(itertools.pairwise(bounds))

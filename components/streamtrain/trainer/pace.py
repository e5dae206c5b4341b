"""Lag-aware micro-batches: how many records each optimizer step takes, and the learning rate that goes with it.

Online, each optimizer step is what the model learns from: the fewer records a step, the more steps a record and
the more the model learns from each. So the trainer takes the smallest steps that still let it keep up with its
stream and clear a backlog within ``catch_up_seconds``. After each batch it reports the records it trained and the
time that took (not the time spent waiting for records); the pace compares that capacity with what the stream
asks for: the rate at which records arrive, plus the backlog spread over ``catch_up_seconds``. Too little capacity
(with a margin): the steps double, up to ``max_size``, each size measured for a moment before the next. Even half
of it enough: they halve, down to ``min_size``, as often as half the capacity would still do (halving the step
never more than halves the capacity, which is per-step overhead plus per-record work).

A trainer that follows its stream therefore takes ``min_size`` steps; a stream faster than those allow gets the
smallest size that keeps up; a long backlog (a restarted trainer, a pre-filled topic) gets larger steps only if
small ones could not clear it in ``catch_up_seconds``.

>>> pace = Pace(min_size=16, max_size=1024, catch_up_seconds=30)
>>> pace.next(backlog=0)
16
>>> pace.trained(records=2_000, seconds=0.25)  # 8,000 records/s in steps of 16
>>> pace.next(backlog=60_000)  # 2,000/s clear it in 30 s: small steps do
16
>>> pace.next(backlog=600_000)  # 20,000/s needed: larger steps
32
>>> pace.trained(records=5_000, seconds=0.25)  # 20,000/s in steps of 32: no margin left
>>> pace.next(backlog=600_000)
64
>>> pace.trained(records=10_000, seconds=0.25)  # 40,000/s
>>> pace.next(backlog=450_000)  # 15,000/s needed: steps of 32 train at least half as fast, and do
32
>>> pace.next(backlog=0)  # caught up: steps of 16 train at least a quarter as fast as steps of 64
16
>>> pace.trained(records=2_000, seconds=0.25)  # 8,000/s
>>> pace.next(backlog=60_000), pace.spare_steps(most=7)  # 2,500/s needed: time for 2 extra steps a step
(16, 2)
>>> Pace(min_size=16, max_size=1024, fixed=256).next(backlog=10_000_000)  # --batch-size 256: always 256
256
>>> split(1024, 1016)  # a batch in steps of at most 1016 records, as even as can be
[(0, 512), (512, 1024)]

The learning rate follows the step (with ``--learning-rate auto``): Adam's steps on a larger batch have a less
noisy gradient and can be longer, by the square root of the batch's growth (Malladi et al., "On the SDEs and
Scaling Rules for Adaptive Gradient Algorithms", NeurIPS 2022; Hoffer et al., "Train longer, generalize better",
NeurIPS 2017).

>>> learning_rate_scale(16), learning_rate_scale(64), learning_rate_scale(1024), learning_rate_scale(3)
(1.0, 2.0, 8.0, 1.0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# The step size the learning rates of --learning-rate auto are set for (the default --min-batch-size).
REFERENCE_STEP = 16
# Capacity wanted beyond what the stream asks for: checkpoints and publications take time too.
HEADROOM = 1.25
# Busy time a step size is measured for before the next change.
SETTLE_SECONDS = 0.2
# Arrival rate: from the topic's end offsets, sampled at least this far apart, smoothed.
ARRIVAL_SECONDS = 1.0
ARRIVAL_SMOOTHING = 0.5


@dataclass
class Pace:
    min_size: int
    max_size: int
    fixed: int | None = None  # --batch-size N: every step takes N records, whatever the lag
    catch_up_seconds: float = 30.0
    size: int = field(init=False)
    arrival_rate: float = field(default=0.0, init=False)  # records/s arriving on the topic
    _records: int = field(default=0, init=False)  # trained at the present size ...
    _busy: float = field(default=0.0, init=False)  # ... in this many seconds
    _end: tuple[float, dict[int, int]] | None = field(default=None, init=False)  # (when, end offsets) last sampled
    _floor: float | None = field(default=None, init=False)  # capacity at the present size at least, until measured
    _needed: float | None = field(default=None, init=False)  # records/s the stream asked for at the last step

    def __post_init__(self) -> None:
        self.size = self.fixed if self.fixed is not None else self.min_size

    @property
    def capacity(self) -> float | None:
        """Records/s the trainer trains at the present size (None: not measured long enough yet)."""
        return self._records / self._busy if self._busy >= SETTLE_SECONDS else None

    def trained(self, records: int, seconds: float) -> None:
        """`records` trained in `seconds` of work at the present size."""
        self._records += records
        self._busy += seconds

    def topic_end(self, ends: Mapping[int, int], now: float) -> None:
        """The end offset of each partition of the topic known so far, at `now` (seconds)."""
        if self._end is None:
            self._end = (now, dict(ends))
            return
        then, before = self._end
        if now - then >= ARRIVAL_SECONDS:
            # Partitions the reader learnt of since are not arrivals: only the growth of those known both times.
            grown = sum(max(0, end - before[p]) for p, end in ends.items() if p in before)
            self.arrival_rate += ARRIVAL_SMOOTHING * (grown / (now - then) - self.arrival_rate)
            self._end = (now, dict(ends))

    def next(self, backlog: int | None) -> int:
        """Records for the next optimizer steps, given the records on the broker beyond the batch in hand (None:
        not known, as with the tensorflow-io reader: the present size)."""
        if self.fixed is not None or backlog is None:
            return self.size
        needed = self._needed = HEADROOM * (self.arrival_rate + backlog / self.catch_up_seconds)
        measured = self.capacity
        known = measured if measured is not None else self._floor
        if measured is not None and measured < needed and self.size < self.max_size:
            self._resize(min(self.max_size, self.size * 2), floor=measured)  # larger steps train at least as fast
        elif known is not None and known / 2 >= needed and self.size > self.min_size:
            # Down in one go, on a bound that needs no new measurement: a trainer that idles measures slowly.
            size, floor = self.size, known
            while size // 2 >= self.min_size and floor / 2 >= needed:
                size, floor = size // 2, floor / 2
            self._resize(max(self.min_size, size), floor=floor)
        return self.size

    def spare_steps(self, most: int) -> int:
        """Extra steps per step (up to `most`) that the time to catch up leaves room for, at the present size: a
        trainer that can clear its backlog with time to spare spends the spare time learning more (rehearsal)."""
        measured = self.capacity
        if self.fixed is not None or self._needed is None:
            return 0
        if self._needed <= 0:  # nothing beyond the batch in hand, nothing arriving
            return most
        if measured is None:
            return 0
        return max(0, min(most, int(measured / self._needed) - 1))

    def _resize(self, size: int, floor: float) -> None:
        self.size, self._records, self._busy, self._floor = size, 0, 0.0, floor


def learning_rate_scale(step: int) -> float:
    """The factor on the learning rate for steps of `step` records (steps below the reference are not slowed:
    the last, short step of a batch learns like the others)."""
    return math.sqrt(max(step, REFERENCE_STEP) / REFERENCE_STEP)


def split(records: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of the steps that take `records` in steps of at most `size`, as even as can be (no step of a
    few leftover records, whose gradient would be as noisy as it is cheap)."""
    steps = max(1, -(-records // size))
    bounds = [round(i * records / steps) for i in range(steps + 1)]
    return list(itertools.pairwise(bounds))

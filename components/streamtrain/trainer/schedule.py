"""When the trainer checkpoints, publishes and reports: every so many seconds or batches, whichever comes first.

>>> every = Schedule(every_seconds=0, every_batches=2, last_time=0.0)
>>> every.tick(); every.due(now=1.0)
False
>>> every.tick(); every.due(now=1.0)
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamtrain.service.config import TrainerSettings


@dataclass
class Schedule:
    every_seconds: float
    every_batches: int = 0
    last_time: float = field(default_factory=time.monotonic)
    batches: int = 0

    def tick(self) -> None:
        self.batches += 1

    def due(self, now: float) -> bool:
        return (self.every_batches > 0 and self.batches >= self.every_batches) or (
            self.every_seconds > 0 and now - self.last_time >= self.every_seconds)

    def reset(self, now: float) -> None:
        self.last_time, self.batches = now, 0


@dataclass
class Schedules:
    checkpoint: Schedule
    publish: Schedule
    metrics: Schedule

    @classmethod
    def of(cls, s: TrainerSettings) -> Schedules:
        return cls(Schedule(s.checkpoint_every_seconds), Schedule(s.publish_every_seconds, s.publish_every_batches),
                   Schedule(s.metrics_every_seconds))

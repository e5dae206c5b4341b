"""A bounded replay buffer: the most recent records, a share of which is mixed into every training batch.

Online training sees each record once; replaying a sample of recent records with every batch is a
cheap guard against forgetting what an unlucky run of batches pushed out (catastrophic forgetting).
The buffer is a ring of fixed capacity (memory is capacity x width floats, allocated once), so it
holds the last `capacity` records; after a concept drift the trainer empties it, as the old records
then teach the old concept.
"""

from __future__ import annotations

import numpy as np


class ReplayBuffer:
    """capacity: records held; ratio: the share of each training batch that comes from the buffer
    (a batch of n new records gets round(n * ratio / (1 - ratio)) replayed ones)."""

    def __init__(self, capacity: int, ratio: float, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not 0 <= ratio < 1:
            raise ValueError("ratio must be in [0, 1)")
        self.capacity = capacity
        self.ratio = ratio
        self.rng = np.random.default_rng(seed)
        self._x: np.ndarray | None = None
        self._y = np.zeros(capacity, np.float32)
        self._next = 0  # where the next record goes
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Keep these records, overwriting the oldest once full."""
        n = int(labels.size)
        if n == 0:
            return
        if self._x is None or self._x.shape[1] != features.shape[1]:
            self._x = np.zeros((self.capacity, features.shape[1]), np.float32)
            self.clear()
        features, labels = features[-self.capacity:], labels[-self.capacity:]
        n = int(labels.size)
        slots = (self._next + np.arange(n)) % self.capacity
        self._x[slots] = features
        self._y[slots] = labels
        self._next = int((self._next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def replay_count(self, fresh: int) -> int:
        """How many replayed records go with a batch of `fresh` new ones."""
        if self.ratio == 0 or self.size == 0:
            return 0
        return min(round(fresh * self.ratio / (1 - self.ratio)), self.size)

    def sample(self, fresh: int) -> tuple[np.ndarray, np.ndarray]:
        """Replayed records for a batch of `fresh` new ones (uniform over the buffer, without repeats)."""
        return self.draw(self.replay_count(fresh))

    def draw(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`k` records (at most all held), uniform over the buffer, without repeats."""
        k = min(k, self.size)
        if k == 0 or self._x is None:
            width = 0 if self._x is None else self._x.shape[1]
            return np.zeros((0, width), np.float32), np.zeros(0, np.float32)
        picks = self.rng.choice(self.size, size=k, replace=False)
        return self._x[picks], self._y[picks]

    def clear(self) -> None:
        self._next = 0
        self.size = 0

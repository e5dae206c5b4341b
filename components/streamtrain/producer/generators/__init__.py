"""Concept-drift stream generators from the literature, one a module: `agrawal`, `sea`, `hyperplane`.

Each draws its records in blocks from a seeded numpy Generator (the same seed gives the same stream) and
labels every record with the concept in force for it. `concepts` says which that is: concept 0 before the
first drift point, concept k from the k-th on; a gradual drift hands over from one concept to the next over
`width` records centred on the point, each record taking the next concept with a probability that rises
linearly across the window (as the producer's `drift` source does). `flip` is the label noise they share.

>>> import numpy as np
>>> concepts(np.random.default_rng(0), start=0, n=8, points=[4], kind="abrupt", width=1).tolist()
[0, 0, 0, 0, 1, 1, 1, 1]
>>> concepts(np.random.default_rng(0), start=0, n=8, points=[4], kind="gradual", width=4).tolist()
[0, 0, 0, 1, 0, 0, 1, 1]
>>> concepts(np.random.default_rng(0), start=100, n=4, points=[4, 50], kind="abrupt", width=1).tolist()
[2, 2, 2, 2]
>>> flip(np.random.default_rng(0), np.array([0, 1, 0, 1], np.float32), rate=1.0).tolist()
[1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

import numpy as np


def concepts(rng: np.random.Generator, start: int, n: int, points: list[int], kind: str, width: int) -> np.ndarray:
    """The concept of records start .. start + n - 1 (int64), given the drift points (record indices)."""
    index = np.arange(start, start + n)
    concept = np.zeros(n, np.int64)
    for k, point in enumerate(points):  # later points override earlier ones
        if kind == "gradual":
            share = np.clip((index - (point - width / 2)) / width, 0.0, 1.0)
            concept[rng.random(n) < share] = k + 1
        else:
            concept[index >= point] = k + 1
    return concept


def flip(rng: np.random.Generator, labels: np.ndarray, rate: float) -> np.ndarray:
    """Labels (0/1) with each one flipped with probability `rate`: class noise."""
    noisy = rng.random(labels.size) < rate
    return np.where(noisy, 1 - labels, labels).astype(labels.dtype)

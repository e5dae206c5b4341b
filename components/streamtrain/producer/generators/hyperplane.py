"""The rotating hyperplane: uniform points labelled by the side of a hyperplane whose weights keep moving.

G. Hulten, L. Spencer and P. Domingos, "Mining Time-Changing Data Streams", Proceedings of the 7th ACM SIGKDD
International Conference on Knowledge Discovery and Data Mining (KDD '01), 97-106, 2001.

Features are uniform on [0, 1]^d; a record is labelled 1 when sum_i w_i x_i >= w_0 = (sum_i w_i) / 2, so the
hyperplane passes through the cube's centre. The weights start uniform on [0, 1]. After every record each of
the first `drift_features` weights moves by `mag_change` in its direction (+1 at the start), and each
direction reverses with probability `sigma`: the concept rotates continuously. `noise` flips a record's label
with that probability.

Drift points add sudden changes to the rotation: at each one, the weights take a fresh draw (uniform on
[0, 1], as the first), keeping what the rotation added so far; abruptly, or moving linearly from the old to
the new weights over `width` records centred on the point (kind "gradual").

>>> import numpy as np
>>> label(np.array([[0.9, 0.9], [0.1, 0.2]]), np.array([[1.0, 2.0], [1.0, 2.0]])).tolist()
[1.0, 0.0]
>>> plane = Hyperplane(seed=0, n_features=4, mag_change=0.0)
>>> x, y = plane.arrays(1000)
>>> x.shape, bool(((x >= 0) & (x <= 1)).all()), bool((y == label(x, np.tile(plane.statics[0], (1000, 1)))).all())
((1000, 4), True, True)
>>> moving = Hyperplane(seed=0, n_features=4, mag_change=0.01, sigma=0.0, drift_features=1)
>>> first = moving.weights(3)
>>> (first[:, 0] - moving.statics[0][0]).round(2).tolist(), bool((first[:, 1:] == moving.statics[0][1:]).all())
([0.0, 0.01, 0.02], True)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from streamtrain.producer.generators import flip

BLOCK = 4096


def label(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Labels (float32) of the rows of x, each under its row of weights: 1 when w . x >= sum(w) / 2."""
    return ((x * weights).sum(axis=1) >= weights.sum(axis=1) / 2).astype(np.float32)


@dataclass
class Hyperplane:
    """The stream's state: where the rotation is, and the weight draws of the concepts between drift points."""

    seed: int
    n_features: int = 10
    mag_change: float = 0.001
    sigma: float = 0.1
    drift_features: int = 2
    points: list[int] = field(default_factory=list)
    kind: str = "abrupt"
    width: int = 2000
    noise: float = 0.0
    start: int = 0  # records drawn so far
    rng: np.random.Generator = field(init=False)
    statics: list[np.ndarray] = field(init=False)  # the draws: the first, then one per drift point
    moved: np.ndarray = field(init=False)  # what the rotation has added to the drifting weights
    direction: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.drift_features <= self.n_features:
            raise ValueError(f"drift features must be 0 to {self.n_features}, got {self.drift_features}")
        self.rng = np.random.default_rng(self.seed)
        self.statics = [self.rng.random(self.n_features) for _ in range(len(self.points) + 1)]
        self.moved = np.zeros(self.drift_features)
        self.direction = np.ones(self.drift_features)

    def weights(self, n: int) -> np.ndarray:
        """The weights of the next n records, one row each; advances the rotation past them."""
        index = np.arange(self.start, self.start + n)
        w = np.tile(self.statics[0], (n, 1))
        for k, point in enumerate(self.points):
            if self.kind == "gradual":
                share = np.clip((index - (point - self.width / 2)) / self.width, 0.0, 1.0)
            else:
                share = (index >= point).astype(np.float64)
            w += share[:, None] * (self.statics[k + 1] - self.statics[k])
        k = self.drift_features
        if k:
            # Record i uses the moves of records before it; a direction reverses after the move it made.
            reverse = self.rng.random((n, k)) < self.sigma
            signs = np.cumprod(np.where(reverse, -1.0, 1.0), axis=0)
            directions = self.direction * np.vstack([np.ones((1, k)), signs[:-1]])  # record i's direction
            steps = self.mag_change * directions
            moved = self.moved + np.cumsum(steps, axis=0) - steps  # moved before record i's own step
            w[:, :k] += moved
            self.moved = moved[-1] + steps[-1]
            self.direction = self.direction * signs[-1]
        self.start += n
        return w

    def arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next n records: features (float64) and labels (float32)."""
        x = self.rng.random((n, self.n_features))
        y = label(x, self.weights(n))
        return x, flip(self.rng, y, self.noise)


def stream(seed: int, n_features: int = 10, mag_change: float = 0.001, sigma: float = 0.1, drift_features: int = 2,
           points: list[int] | None = None, kind: str = "abrupt", width: int = 2000,
           noise: float = 0.05) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless blocks of BLOCK records, seeded."""
    state = Hyperplane(seed, n_features, mag_change, sigma, drift_features, list(points or []), kind, width, noise)
    while True:
        yield state.arrays(BLOCK)

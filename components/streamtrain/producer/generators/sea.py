"""The SEA concepts: three uniform features, the label a threshold on the sum of the first two.

W. N. Street and Y. Kim, "A Streaming Ensemble Algorithm (SEA) for Large-Scale Classification", Proceedings of
the 7th ACM SIGKDD International Conference on Knowledge Discovery and Data Mining (KDD '01), 377-382, 2001.

Every feature is uniform on [0, 10]; the third is irrelevant. Variant v labels a record 1 when
x1 + x2 > THRESHOLDS[v] (8, 9, 7 and 9.5: the paper's four concepts, in its order). The paper adds 10 % class
noise: `noise` is the probability that a record's label is flipped.

>>> import numpy as np
>>> label(np.array([[4.0, 4.5, 9.0], [1.0, 2.0, 9.0]]), variant=0).tolist()
[1.0, 0.0]
>>> label(np.array([[4.0, 4.5, 9.0]]), variant=1).tolist()
[0.0]
>>> x, y = arrays(np.random.default_rng(0), 0, 1000, variants=[0, 2], points=[500], kind="abrupt", width=1)
>>> x.shape, bool((y[:500] == (x[:500, 0] + x[:500, 1] > 8)).all()), bool((y[500:] == (x[500:, :2].sum(1) > 7)).all())
((1000, 3), True, True)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from streamtrain.producer.generators import concepts, flip

THRESHOLDS = (8.0, 9.0, 7.0, 9.5)
FEATURES = 3
BLOCK = 4096


def label(x: np.ndarray, variant: int) -> np.ndarray:
    """Labels (float32) of the rows of x under variant 0-3."""
    return (x[:, 0] + x[:, 1] > THRESHOLDS[variant]).astype(np.float32)


def arrays(rng: np.random.Generator, start: int, n: int, variants: list[int], points: list[int], kind: str,
           width: int, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Records start .. start + n - 1: features (float64) and labels (float32); concept k uses variants[k]."""
    x = 10 * rng.random((n, FEATURES))
    concept = concepts(rng, start, n, points, kind, width)
    thresholds = np.asarray(THRESHOLDS)[np.asarray(variants)[concept]]
    y = (x[:, 0] + x[:, 1] > thresholds).astype(np.float32)
    return x, flip(rng, y, noise)


def stream(seed: int, variants: list[int], points: list[int], kind: str = "abrupt", width: int = 2000,
           noise: float = 0.1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless blocks of BLOCK records, seeded: concept k (from the k-th drift point on) uses variants[k]."""
    if len(variants) != len(points) + 1:
        raise ValueError(f"one variant per concept: {len(points)} drift points need {len(points) + 1}")
    rng = np.random.default_rng(seed)
    for start in range(0, 2**62, BLOCK):
        yield arrays(rng, start, BLOCK, variants, points, kind, width, noise)

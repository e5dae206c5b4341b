"""How good a published version is, on a fixed set of records scored in this process.

A live component's window accuracy depends on which version happened to score which record; a version
scored on fixed records gives one figure, so quality thresholds can be set from measured distributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamtrain import metrics
from streamtrain.store import model_store


@dataclass(frozen=True)
class Quality:
    version: int
    accuracy: float
    auc: float

    def __str__(self) -> str:
        return f"version {self.version}: accuracy {self.accuracy:.4f}, auc {self.auc:.4f}"


def newest_version_quality(models: Path, x: np.ndarray, y: np.ndarray, name: str = "streamtrain") -> Quality:
    """The newest version under `models` scored on features `x` and 0/1 labels `y`."""
    number = model_store.version_numbers(models, name)[-1]
    model, _ = model_store.load(model_store.model_root(models, name) / str(number), width=x.shape[1])
    scores = np.asarray(model.predict(x.astype(np.float32), batch_size=1024, verbose=0))[:, 0]
    labels = y.astype(np.float32)
    accuracy = float(((scores >= 0.5) == (labels == 1)).mean())
    return Quality(number, accuracy, float(metrics.auc(scores, labels) or 0.0))

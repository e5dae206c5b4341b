"""A model version loaded for scoring: the Keras model, its compiled predict, and where it came from.

The evaluator and the predictor hold one of these per version they use; swapping versions is swapping the
reference, so a batch that started on a version finishes on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from streamtrain.store import model_store


@dataclass
class LoadedModel:
    version: int
    model: keras.Model
    predict: Any  # compiled scoring function: float32 features [n, width] -> probabilities [n]
    manifest: dict[str, Any]
    loaded_at_ms: int

    @property
    def width(self) -> int:
        return int(self.model.inputs[0].shape[1])


def compile_predict(model: keras.Model) -> Any:
    width = int(model.inputs[0].shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32)])
    def predict(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)[:, 0]

    # The concrete function skips tf.function's per-call dispatch (as the trainer's step does): ~0.1 ms a batch.
    return predict.get_concrete_function()


def load_version(number: int, path: Path, width: int | None = None) -> LoadedModel:
    """Verify and load one version; raises model_store.CorruptVersion."""
    model_store.verify(path)
    model, manifest = model_store.load(path, width)
    return LoadedModel(number, model, compile_predict(model), manifest, int(time.time() * 1000))

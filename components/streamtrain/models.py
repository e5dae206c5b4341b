"""Model factories: the tutorial's MLP (loss bug fixed), logistic regression, or the user's own model.

Every model starts with a RunningStandardization layer whose statistics the trainer updates from
the stream, so a published version takes raw features, whoever serves it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import keras

Factory = Callable[[int], keras.Model]


@keras.saving.register_keras_serializable(package="streamtrain")
class RunningStandardization(keras.layers.Layer):
    """(x - mean) / std with per-feature statistics kept up to date from the stream (not by gradients)."""

    def __init__(self, epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        width = int(input_shape[-1])  # type: ignore[arg-type]
        self.mean = self.add_weight(name="mean", shape=(width,), initializer="zeros", trainable=False)
        self.variance = self.add_weight(name="variance", shape=(width,), initializer="ones", trainable=False)
        self.count = self.add_weight(name="count", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs: Any) -> Any:
        return (inputs - self.mean) / keras.ops.sqrt(self.variance + self.epsilon)

    def update(self, batch: Any) -> None:
        """Merge a batch into the running statistics (Chan et al.'s parallel update); graph-safe."""
        ops = keras.ops
        n_b = ops.cast(ops.shape(batch)[0], "float32")
        n_a = self.count
        n = n_a + n_b
        # Sums over max(n_b, 1), so an empty batch leaves the statistics as they were (not NaN).
        mean_b = ops.sum(batch, axis=0) / ops.maximum(n_b, 1.0)
        var_b = ops.sum(ops.square(batch - mean_b), axis=0) / ops.maximum(n_b, 1.0)
        var_a = ops.where(n_a > 0, self.variance, ops.zeros_like(self.variance))
        delta = mean_b - self.mean
        share = n_b / ops.maximum(n, 1.0)
        self.mean.assign(self.mean + delta * share)
        self.variance.assign((var_a * n_a + var_b * n_b + ops.square(delta) * n_a * share) / ops.maximum(n, 1.0))
        self.count.assign(n)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


def _dense_stack(width: int, hidden: list[tuple[int, float]], seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(width,), name="features")
    x = RunningStandardization(name="standardize")(inputs)
    for units, dropout in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Dropout(dropout)(x)
    # The tutorial passes from_logits=True to a sigmoid output; the output here is a probability
    # and the loss is told so (see compile()).
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs)


def mlp(width: int, seed: int = 0) -> keras.Model:
    """The TensorFlow Kafka tutorial's network: 68,481 trainable parameters on 18 features."""
    return _dense_stack(width, [(128, 0.2), (256, 0.4), (128, 0.4)], seed)


def logreg(width: int, seed: int = 0) -> keras.Model:
    return _dense_stack(width, [], seed)


def _wrap_user_model(user: keras.Model, width: int) -> keras.Model:
    if any(isinstance(layer, RunningStandardization) for layer in user.layers):
        return user
    inputs = keras.Input(shape=(width,), name="features")
    outputs = user(RunningStandardization(name="standardize")(inputs))
    return keras.Model(inputs, outputs)


def build(spec: str, width: int, seed: int = 0) -> keras.Model:
    """Build the model named by `spec`: mlp, logreg, a .keras file, or a module:function(width) factory."""
    if spec == "mlp":
        model = mlp(width, seed)
    elif spec == "logreg":
        model = logreg(width, seed)
    elif spec.endswith(".keras"):
        model = _wrap_user_model(keras.models.load_model(spec, compile=False, safe_mode=True), width)
    else:
        module_name, _, function_name = spec.partition(":")
        factory: Factory = getattr(importlib.import_module(module_name), function_name)
        model = _wrap_user_model(factory(width), width)
    check_shape(model, width)
    return model


def check_shape(model: keras.Model, width: int) -> None:
    """A binary classifier on `width` features: input (None, width), output (None, 1)."""
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if in_shape[1:] != (width,):
        raise ValueError(f"model input shape {in_shape} does not take {width} features")
    if out_shape[1:] != (1,):
        raise ValueError(f"model output shape {out_shape} is not (None, 1): expected one probability")


def standardizer(model: keras.Model) -> RunningStandardization | None:
    for layer in model.layers:
        if isinstance(layer, RunningStandardization):
            return layer
    return None

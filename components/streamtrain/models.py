"""Model factories: the tutorial's MLP (loss bug fixed), logistic regression, or the user's own model.

Every model starts with a RunningStandardization layer whose statistics the trainer updates from
the stream, so a published version takes raw features, whoever serves it. Declared categorical columns
pass through it untouched and are then encoded by a CategoricalColumns layer, inside the model too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

Factory = Callable[[int], keras.Model]
Categories = Mapping[int, int]  # feature column -> its number of categories (codes 0 .. n-1)

# Up to this many categories a column is one-hot encoded: exact, and one weight per category in logreg. Above it, a
# learnt EMBEDDING_WIDTH-wide table. Measured with the MLP on 18 features, batch 256 (two runs): one column of 10 or
# 100 categories costs the same either way (2.6-2.9 ms a step); 1,000 as one-hot 4.6-8.2 ms vs 2.8 embedded;
# 10,000 as one-hot 26-29 ms and 1.35 M parameters vs 3.2-4.8 ms and 0.15 M embedded.
ONE_HOT_MAX = 100
EMBEDDING_WIDTH = 8


@keras.saving.register_keras_serializable(package="streamtrain")
class RunningStandardization(keras.layers.Layer):
    """(x - mean) / std with per-feature statistics kept up to date from the stream (not by gradients)."""

    def __init__(self, epsilon: float = 1e-6, passthrough: Sequence[int] = (), **kwargs: Any) -> None:
        """passthrough: columns (categorical codes) left as they are, their mean and variance never updated."""
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.passthrough = tuple(sorted(int(c) for c in passthrough))

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        width = int(input_shape[-1])  # type: ignore[arg-type]
        self.mean = self.add_weight(name="mean", shape=(width,), initializer="zeros", trainable=False)
        self.variance = self.add_weight(name="variance", shape=(width,), initializer="ones", trainable=False)
        self.count = self.add_weight(name="count", shape=(), initializer="zeros", trainable=False)
        self._kept = np.isin(np.arange(width), self.passthrough)  # a constant of the graph, not a weight

    def call(self, inputs: Any) -> Any:
        standardized = (inputs - self.mean) / keras.ops.sqrt(self.variance + self.epsilon)
        # Codes go through exactly (not divided by sqrt(1 + epsilon)), so the encoder sees the integers.
        return keras.ops.where(self._kept, inputs, standardized) if self.passthrough else standardized

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
        mean = self.mean + delta * share
        variance = (var_a * n_a + var_b * n_b + ops.square(delta) * n_a * share) / ops.maximum(n, 1.0)
        if self.passthrough:  # category codes are no magnitudes: their columns keep mean 0 and variance 1
            mean = ops.where(self._kept, self.mean, mean)
            variance = ops.where(self._kept, self.variance, variance)
        self.mean.assign(mean)
        self.variance.assign(variance)
        self.count.assign(n)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "epsilon": self.epsilon}
        if self.passthrough:  # only then, so models without categorical columns save the config they always had
            config["passthrough"] = list(self.passthrough)
        return config


@keras.saving.register_keras_serializable(package="streamtrain")
class CategoricalColumns(keras.layers.Layer):
    """A raw row -> its numeric columns, then each categorical column one-hot (or embedded, above ONE_HOT_MAX).

    A code is rounded to the nearest integer; 0 .. n-1 are the n declared categories and anything else (negative,
    n or more, NaN) falls into one extra "other" bucket: a code unseen at declaration neither fails the batch nor
    passes for a known category, and the model learns what "other" means like any category.
    """

    def __init__(self, columns: Sequence[Sequence[int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns = tuple(sorted((int(column), int(n)) for column, n in columns))

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        width = int(input_shape[-1])  # type: ignore[arg-type]
        check_categories(dict(self.columns), width)
        declared = {column for column, _ in self.columns}
        self.numeric = np.array([i for i in range(width) if i not in declared], np.int32)
        # str keys: TensorFlow's SavedModel export tracks dicts of variables only by string keys.
        self.tables = {
            str(column): self.add_weight(name=f"embedding_{column}", shape=(n + 1, EMBEDDING_WIDTH),
                                         initializer="uniform")
            for column, n in self.columns if n > ONE_HOT_MAX
        }

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        parts = [ops.take(inputs, self.numeric, axis=1)] if self.numeric.size else []
        for column, n in self.columns:
            code = ops.round(inputs[:, column])
            known = ops.logical_and(code >= 0, code < n)  # False for NaN too
            index = ops.cast(ops.where(known, code, float(n)), "int32")
            table = self.tables.get(str(column))
            parts.append(ops.one_hot(index, n + 1) if table is None else ops.take(table, index, axis=0))
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], encoded_width(int(input_shape[-1]), dict(self.columns)))  # type: ignore[arg-type]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "columns": [list(pair) for pair in self.columns]}


def check_categories(categories: Categories, width: int) -> None:
    """Every declared column is one of the `width` features and has at least 2 categories."""
    for column, n in sorted(categories.items()):
        if not 0 <= column < width:
            raise ValueError(f"categorical column {column} is beyond the {width} features (columns 0 to {width - 1})")
        if n < 2:
            raise ValueError(f"categorical column {column} has {n} categories; it needs at least 2")


def encoded_width(width: int, categories: Categories) -> int:
    """Features after encoding: the numeric columns, n + 1 per one-hot column, EMBEDDING_WIDTH per embedded one."""
    return width + sum((n + 1 if n <= ONE_HOT_MAX else EMBEDDING_WIDTH) - 1 for n in categories.values())


def _encode(inputs: Any, categories: Categories) -> Any:
    """Standardize the numeric columns (the layer the trainer keeps statistics in), then encode the categorical."""
    if not categories:
        return RunningStandardization(name="standardize")(inputs)
    x = RunningStandardization(passthrough=list(categories), name="standardize")(inputs)
    return CategoricalColumns(sorted(categories.items()), name="categorical")(x)


def _dense_stack(width: int, hidden: list[tuple[int, float]], seed: int, categories: Categories) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(width,), name="features")
    x = _encode(inputs, categories)
    for units, dropout in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
        x = keras.layers.Dropout(dropout)(x)
    # The tutorial passes from_logits=True to a sigmoid output; the output here is a probability
    # and the loss is told so (see compile()).
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs)


def mlp(width: int, seed: int = 0, categories: Categories | None = None) -> keras.Model:
    """The TensorFlow Kafka tutorial's network: 68,481 trainable parameters on 18 features."""
    return _dense_stack(width, [(128, 0.2), (256, 0.4), (128, 0.4)], seed, categories or {})


def logreg(width: int, seed: int = 0, categories: Categories | None = None) -> keras.Model:
    return _dense_stack(width, [], seed, categories or {})


def _wrap_user_model(user: keras.Model, width: int, categories: Categories) -> keras.Model:
    if any(isinstance(layer, RunningStandardization) for layer in user.layers):
        if categories and categorical_columns(user) != dict(categories):
            raise ValueError(f"the model already standardizes its input with categorical columns "
                             f"{format_categories(categorical_columns(user)) or 'none'}, not "
                             f"{format_categories(categories)}")
        return user
    inner = encoded_width(width, categories)
    if categories and user.inputs and tuple(user.inputs[0].shape)[1:] != (inner,):
        raise ValueError(f"model input shape {tuple(user.inputs[0].shape)} does not take the {inner} encoded "
                         f"features ({width} columns, categorical ones encoded)")
    inputs = keras.Input(shape=(width,), name="features")
    outputs = user(_encode(inputs, categories))
    return keras.Model(inputs, outputs)


def build(spec: str, width: int, seed: int = 0, categories: Categories | None = None) -> keras.Model:
    """Build the model named by `spec`: mlp, logreg, a .keras file, or a module:function(width) factory.

    categories: the categorical columns and their number of categories; a user model (file or factory) gets the
    encoded row, so a factory is called with encoded_width(width, categories).
    """
    categories = dict(categories or {})
    check_categories(categories, width)
    if spec == "mlp":
        model = mlp(width, seed, categories)
    elif spec == "logreg":
        model = logreg(width, seed, categories)
    elif spec.endswith(".keras"):
        model = _wrap_user_model(keras.models.load_model(spec, compile=False, safe_mode=True), width, categories)
    else:
        module_name, _, function_name = spec.partition(":")
        factory: Factory = getattr(importlib.import_module(module_name), function_name)
        model = _wrap_user_model(factory(encoded_width(width, categories)), width, categories)
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


def categorical_columns(model: keras.Model) -> dict[int, int]:
    """What the model treats as categorical: {column: categories}; empty for a model without the encoder."""
    for layer in model.layers:
        if isinstance(layer, CategoricalColumns):
            return dict(layer.columns)
    return {}


def format_categories(categories: Categories) -> str:
    """The --categorical-columns spelling: '3:5,4:21'."""
    return ",".join(f"{column}:{n}" for column, n in sorted(categories.items()))

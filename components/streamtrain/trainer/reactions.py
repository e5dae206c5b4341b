"""The reactions to a drift that reach into the Keras model and optimizer: zero the optimizer's state, or
re-initialise the output layer. (Raising the learning rate for a while is done by trainer/adapt.py, which counts the
batches.)"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def _is_learning_rate(optimizer: keras.optimizers.Optimizer, variable: Any) -> bool:
    lr = getattr(optimizer, "_learning_rate", None)
    return variable is lr or str(getattr(variable, "path", "")).endswith("learning_rate")


def reset_optimizer(optimizer: keras.optimizers.Optimizer) -> int:
    """Zero the optimizer's state (step count, moment estimates); the learning rate stays. Returns how many."""
    count = 0
    for variable in optimizer.variables:
        if _is_learning_rate(optimizer, variable):
            continue
        variable.assign(np.zeros(variable.shape, variable.dtype))
        count += 1
    return count


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer with trainable weights (looking inside a wrapped user model)."""
    layer: keras.layers.Layer = model
    while isinstance(layer, keras.Model):
        trainable = [sub for sub in layer.layers if sub.trainable_weights]
        if not trainable:
            raise ValueError("the model has no trainable layer")
        layer = trainable[-1]
    return layer


def _fresh_value(layer: keras.layers.Layer, variable: Any, seed: int) -> np.ndarray:
    shape = tuple(int(d) for d in variable.shape)
    dtype = variable.dtype
    for attribute, initializer_name in (("kernel", "kernel_initializer"), ("bias", "bias_initializer")):
        if variable is getattr(layer, attribute, None) and getattr(layer, initializer_name, None) is not None:
            template = getattr(layer, initializer_name)
            config = template.get_config()
            if "seed" in config:
                config["seed"] = seed
            return np.asarray(type(template).from_config(config)(shape, dtype=dtype))
    if len(shape) >= 2:
        return np.asarray(keras.initializers.GlorotUniform(seed=seed)(shape, dtype=dtype))
    return np.zeros(shape, dtype)


def reinit_output(model: keras.Model, optimizer: keras.optimizers.Optimizer, seed: int) -> str:
    """Re-initialise the output layer's weights (as when the model was built) and zero their optimizer
    moments; every other layer keeps what it learnt. Returns the layer's name."""
    layer = output_layer(model)
    for offset, variable in enumerate(layer.trainable_weights):
        variable.assign(_fresh_value(layer, variable, seed + offset))
        try:
            index = optimizer._get_variable_index(variable)
        except (AttributeError, KeyError):
            continue
        for slots in (getattr(optimizer, "_momentums", None), getattr(optimizer, "_velocities", None)):
            if slots:
                slots[index].assign(np.zeros(slots[index].shape, slots[index].dtype))
    return str(layer.name)

"""lib.tensors.as_tensor: the same values as tf.constant, for any array layout, and nothing left behind."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from streamtrain.tensors import as_tensor

BASE = np.arange(2048 * 18, dtype=np.float32).reshape(2048, 18)


@pytest.mark.parametrize("array", [
    BASE,
    BASE[3:1027],  # a row slice: contiguous, at an unaligned offset
    BASE[16:1040],  # a row slice 1,152 bytes in: aligned if BASE is
    BASE[:, :5],  # strided
    np.frombuffer(BASE.tobytes(), np.float32).reshape(2048, 18),  # read-only, as decoded from a record
    np.array(7, np.int32),  # a scalar
    np.ones(0, np.float32),  # empty
], ids=["contiguous", "row-slice", "row-slice-2", "strided", "read-only", "scalar", "empty"])
def test_values_dtype_and_shape(array: np.ndarray) -> None:
    tensor = as_tensor(array)
    assert tensor.dtype.as_numpy_dtype == array.dtype
    assert tuple(tensor.shape) == array.shape
    np.testing.assert_array_equal(tensor.numpy(), array)
    # A kernel reads it as an aligned Eigen map: an unaligned buffer aborts the process here.
    np.testing.assert_array_equal((tensor * 2).numpy(), array * 2)


def test_the_tensor_outlives_the_array_it_came_from() -> None:
    tensor = as_tensor(np.full((64, 18), 2.5, np.float32))  # the array's only reference is DLPack's
    gc.collect()
    np.testing.assert_array_equal(tensor.numpy(), np.full((64, 18), 2.5, np.float32))


def _left_behind(convert: Callable[[np.ndarray], Any]) -> int:
    """Bytes still allocated (tracemalloc) after 10,000 tensors built by `convert`."""
    batch = np.ones((256, 18), np.float32)
    for _ in range(200):  # warm caches
        convert(batch)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(5000):
            convert(batch)
            convert(np.array(256, np.int32))
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def test_no_memory_left_behind_per_tensor() -> None:
    grown = _left_behind(as_tensor)
    assert grown < 200_000, f"{grown} bytes still allocated after 10,000 tensors"


@pytest.mark.tfio
@pytest.mark.skipif(not tf.__version__.startswith("2.16."), reason="the leak is TensorFlow 2.16's (the tfio extra's)")
def test_tf_constant_leaks_on_the_tfio_extras_tensorflow() -> None:
    """Why as_tensor exists: on TF 2.16 tf.constant keeps ~340 B a tensor (measured: 3.4 MB for these 10,000)."""
    assert _left_behind(tf.constant) > 1_000_000

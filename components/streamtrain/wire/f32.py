"""f32: key = the label, value = one feature row as little-endian float32, 4 bytes a feature (header
`streamtrain.format: f32`; about 20x cheaper to encode and 5x cheaper to decode than CSV).

>>> values = encode_f32(np.array([[0.5, 2.0]]))
>>> values
[b'\\x00\\x00\\x00?\\x00\\x00\\x00@']
>>> row, label = decode_f32_record(b"1", values[0], width=2)
>>> row.tolist(), label
([0.5, 2.0], 1.0)
>>> decode_f32_record(b"1", values[0], width=3)
Traceback (most recent call last):
...
streamtrain.wire.base.BadRecordError: wrong-column-count: 2 float32 features, expected 3
"""

from __future__ import annotations

from typing import cast

import numpy as np

from streamtrain.wire.base import F32, MAX_VALUE_BYTES, BadRecordError, Decoded, WireFormat
from streamtrain.wire.labels import decode_label, labels_fast


def encode_f32(features: np.ndarray) -> list[bytes]:
    """Each row as little-endian float32 bytes (send with the header streamtrain.format: f32)."""
    data = np.ascontiguousarray(features, dtype=F32)
    if data.ndim != 2 or data.shape[1] == 0:
        raise ValueError(f"expected a 2-d array with at least one column, got shape {data.shape}")
    raw, row = data.tobytes(), data.shape[1] * F32.itemsize
    return [raw[i:i + row] for i in range(0, len(raw), row)]


def decode_f32_record(key: bytes | None, value: bytes | None, width: int | None) -> tuple[np.ndarray, float]:
    """One record's (row, label); raises BadRecordError."""
    if value is None or value == b"":
        raise BadRecordError("empty-value", "the record has no value")
    if len(value) > MAX_VALUE_BYTES:
        raise BadRecordError("oversized", f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    if len(value) % F32.itemsize:
        raise BadRecordError("wrong-column-count", f"{len(value)} bytes is not a whole number of float32 features")
    row = np.frombuffer(value, dtype=F32)
    if width is not None and row.size != width:
        raise BadRecordError("wrong-column-count", f"{row.size} float32 features, expected {width}")
    finite = np.isfinite(row)
    if not finite.all():
        column = int(np.flatnonzero(~finite)[0])
        raise BadRecordError("non-finite", f"column {column} is {row[column]}")
    return row, decode_label(key)


def decode_many(keys: list[bytes | None], values: list[bytes | None], width: int) -> Decoded | None:
    """The whole batch at once, or None when any record needs the per-record pass."""
    n = len(values)
    try:
        if set(map(len, values)) != {width * F32.itemsize}:  # type: ignore[arg-type]  # None raises TypeError
            return None
    except TypeError:
        return None
    raw = b"".join(cast(list[bytes], values))
    x = np.frombuffer(raw, dtype=F32).reshape(n, width).astype(np.float32)  # native order, writable
    y = labels_fast(keys)
    if y is None or not np.isfinite(x).all():
        return None
    return Decoded(x, y, np.arange(n))


def width_of(values: list[bytes | None]) -> int | None:
    """The width the first whole-float32 value of the batch has."""
    return next((len(v) // F32.itemsize for v in values if v and len(v) % F32.itemsize == 0), None)


F32_RECORD = WireFormat("f32", b"f32", "one", decode_f32_record, decode_many)

"""CSV: key = the label, value = one feature row as comma-separated text (the TensorFlow Kafka tutorial's format,
and what a record without a `streamtrain.format` header is).

>>> values = encode_rows(np.array([[0.5, 2.0], [1.0, -3.0]]))
>>> values
[b'0.5,2', b'1,-3']
>>> decode_record(b"1", values[1], width=2)
([1.0, -3.0], 1.0)
>>> decode_record(b"0", b"0.5,abc", width=2)
Traceback (most recent call last):
...
streamtrain.wire.base.BadRecordError: non-numeric: column 1 is 'abc'
"""

from __future__ import annotations

import io
import math
import warnings
from typing import cast

import numpy as np

from streamtrain.wire.base import MAX_VALUE_BYTES, BadRecordError, Decoded, WireFormat
from streamtrain.wire.labels import decode_label, labels_fast

FLOAT32_MAX = float(np.finfo(np.float32).max)


def encode_rows(features: np.ndarray) -> list[bytes]:
    """CSV text per row, 7 significant digits (float32 precision)."""
    buffer = io.BytesIO()
    np.savetxt(buffer, features, fmt="%.7g", delimiter=",")
    return buffer.getvalue().splitlines()


def decode_record(key: bytes | None, value: bytes | None, width: int | None) -> tuple[list[float], float]:
    """One record's (row, label); raises BadRecordError."""
    if value is None or value == b"":
        raise BadRecordError("empty-value", "the record has no value")
    if len(value) > MAX_VALUE_BYTES:
        raise BadRecordError("oversized", f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecordError("not-utf8", f"byte {exc.start} of the value is not UTF-8") from None
    text = text.rstrip("\r\n")
    if "\n" in text or "\r" in text:
        raise BadRecordError("multiple-rows", "the value holds a line break")
    parts = text.split(",")
    if width is not None and len(parts) != width:
        raise BadRecordError("wrong-column-count", f"{len(parts)} columns, expected {width}")
    row: list[float] = []
    for column, part in enumerate(parts):
        try:
            number = float(part)
        except ValueError:
            raise BadRecordError("non-numeric", f"column {column} is {part.strip()[:20]!r}") from None
        if not math.isfinite(number):
            raise BadRecordError("non-finite", f"column {column} is {part.strip()}")
        if abs(number) > FLOAT32_MAX:
            raise BadRecordError("non-finite", f"column {column} ({part.strip()[:20]}) overflows float32")
        row.append(number)
    return row, decode_label(key)


def decode_many(keys: list[bytes | None], values: list[bytes | None], width: int) -> Decoded | None:
    """The whole batch in one vectorised parse, or None when any record needs the per-record pass."""
    n = len(values)
    try:
        if max(map(len, values)) > MAX_VALUE_BYTES:  # type: ignore[arg-type]  # None raises TypeError
            return None
        # numpy's C loadtxt is ~3x faster than splitting in Python; it rejects ragged or non-numeric rows.
        with warnings.catch_warnings():  # an empty value makes loadtxt warn; the slow path names it
            warnings.simplefilter("ignore")
            x = np.loadtxt(cast(list[bytes], values), delimiter=",", dtype=np.float32, comments=None, ndmin=2)
    except (TypeError, ValueError):
        return None
    y = labels_fast(keys)  # any other spelling of a label is judged record by record
    if y is None or x.shape != (n, width) or not np.isfinite(x).all():
        return None  # empty or multi-line values change the row count
    return Decoded(x, y, np.arange(n))


def first_width(values: list[bytes | None]) -> int | None:
    """The most common column count of the batch's numeric rows (the earliest on a tie): a malformed but
    numeric row at the start of a stream (say 3 columns of 18) must not set the width for good.

    >>> first_width([b"1,2", b"1,2,3", b"x,y,z", b"4,5"])
    2
    """
    counts: dict[int, int] = {}
    for value in values:
        if value:
            try:
                row = [float(f) for f in value.decode().split(",")]
            except (ValueError, UnicodeDecodeError):
                continue
            if all(math.isfinite(v) for v in row):
                counts[len(row)] = counts.get(len(row), 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


CSV = WireFormat("csv", None, "one", decode_record, decode_many)

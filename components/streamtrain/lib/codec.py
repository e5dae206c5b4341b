"""The wire format: value = the feature row as CSV text, key = the label (the TensorFlow Kafka tutorial's).

Decoding is batched: one vectorised parse for the whole micro-batch, and a per-record pass only
when the batch holds a bad record, to name it and its reason.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from typing import cast

import numpy as np

MAX_VALUE_BYTES = 64 * 1024
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Labels the fast path accepts as they are (the tutorial writes 0.0/1.0); others go record by record.
_CANONICAL_LABELS = {b"0": 0.0, b"1": 1.0, b"0.0": 0.0, b"1.0": 1.0}
FORMAT_HEADER = "streamtrain.format"
CSV_FORMAT = b"csv"


@dataclass
class BadRecord:
    index: int  # position in the batch
    reason: str  # "<kind>: detail", one line


@dataclass
class Decoded:
    features: np.ndarray  # float32 [n_good, width]
    labels: np.ndarray  # float32 [n_good]
    good: np.ndarray  # int indices into the batch of the good records
    bad: list[BadRecord] = field(default_factory=list)


class WidthMismatch(ValueError):
    pass


def encode_rows(features: np.ndarray) -> list[bytes]:
    """CSV text per row, 7 significant digits (float32 precision)."""
    buffer = io.BytesIO()
    np.savetxt(buffer, features, fmt="%.7g", delimiter=",")
    return buffer.getvalue().splitlines()


def encode_labels(labels: np.ndarray) -> list[bytes]:
    return [b"1" if v else b"0" for v in labels.astype(bool)]


def decode_batch(keys: list[bytes | None], values: list[bytes | None],
                 width: int | None) -> tuple[Decoded, int | None]:
    """Decode a micro-batch; returns the result and the width (learnt from the first good row if None)."""
    n = len(values)
    if n == 0:
        w = width or 0
        return Decoded(np.zeros((0, w), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)), w
    if width is None:
        width = _first_width(values)
    fast = _decode_fast(keys, values, width) if width else None
    if fast is not None:
        return fast, width
    return _decode_slow(keys, values, width), width


def _first_width(values: list[bytes | None]) -> int | None:
    for value in values:
        if value:
            try:
                row = [float(f) for f in value.decode().split(",")]
            except (ValueError, UnicodeDecodeError):
                continue
            if all(math.isfinite(v) for v in row):
                return len(row)
    return None


def _decode_fast(keys: list[bytes | None], values: list[bytes | None], width: int) -> Decoded | None:
    n = len(values)
    try:
        if max(map(len, values)) > MAX_VALUE_BYTES:  # type: ignore[arg-type]  # None raises TypeError
            return None
        # numpy's C loadtxt is ~3x faster than splitting in Python; it rejects ragged or non-numeric rows.
        with warnings.catch_warnings():  # an empty value makes loadtxt warn; the slow path names it
            warnings.simplefilter("ignore")
            x = np.loadtxt(cast(list[bytes], values), delimiter=",", dtype=np.float32, comments=None, ndmin=2)
        y = np.array([_CANONICAL_LABELS[k] for k in keys], np.float32)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None  # any other spelling of a label is judged record by record
    if x.shape != (n, width) or not np.isfinite(x).all():
        return None  # empty or multi-line values change the row count
    return Decoded(x, y, np.arange(n))


def _decode_slow(keys: list[bytes | None], values: list[bytes | None], width: int | None) -> Decoded:
    rows: list[list[float]] = []
    labels: list[float] = []
    good: list[int] = []
    bad: list[BadRecord] = []
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        try:
            row, label = decode_record(key, value, width)
        except ValueError as exc:
            bad.append(BadRecord(i, str(exc)))
            continue
        rows.append(row)
        labels.append(label)
        good.append(i)
    features = np.array(rows, np.float32).reshape(len(rows), width or 0)
    return Decoded(features, np.array(labels, np.float32), np.array(good, np.int64), bad)


def decode_record(key: bytes | None, value: bytes | None, width: int | None) -> tuple[list[float], float]:
    """Decode one record or raise ValueError('<kind>: <detail>')."""
    if value is None or value == b"":
        raise ValueError("empty-value: the record has no value")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"oversized: value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not-utf8: byte {exc.start} of the value is not UTF-8") from None
    text = text.rstrip("\r\n")
    if "\n" in text or "\r" in text:
        raise ValueError("multiple-rows: the value holds a line break")
    parts = text.split(",")
    if width is not None and len(parts) != width:
        raise ValueError(f"wrong-column-count: {len(parts)} columns, expected {width}")
    row: list[float] = []
    for column, part in enumerate(parts):
        try:
            number = float(part)
        except ValueError:
            shown = part.strip()[:20]
            raise ValueError(f"non-numeric: column {column} is {shown!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"non-finite: column {column} is {part.strip()}")
        if abs(number) > FLOAT32_MAX:
            raise ValueError(f"non-finite: column {column} ({part.strip()[:20]}) overflows float32")
        row.append(number)
    return row, decode_label(key)


def decode_label(key: bytes | None) -> float:
    if key is None or key == b"":
        raise ValueError("missing-label: the record has no key (the label)")
    try:
        label = float(key.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"invalid-label: key {key[:20]!r} is not a number") from None
    if label not in (0.0, 1.0):
        raise ValueError(f"invalid-label: {label:g} is not 0 or 1")
    return label

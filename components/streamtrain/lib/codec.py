"""The wire formats: key = the label, value = the feature row, as CSV text (the TensorFlow Kafka
tutorial's, the default) or as little-endian float32 (4 bytes a feature, marked by the record header
`streamtrain.format: f32`; about 20x cheaper to encode and 5x cheaper to decode than CSV).

A third format packs many rows into one record (header `streamtrain.format: f32-block`): key = one
ASCII '0' or '1' per row, value = the rows' float32 features back to back. Per-record costs (the
client's message objects, the broker's per-record work) dominate consumption at 100k+ records/s on
small rows; a block pays them once for hundreds of rows. A block is one Kafka record: it is trained,
checkpointed and dead-lettered whole.

Decoding is batched: one vectorised parse for the whole micro-batch, and a per-record pass only
when the batch holds a bad record, to name it and its reason. A batch may mix the two formats.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

MAX_VALUE_BYTES = 64 * 1024
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Labels the fast path accepts as they are (the tutorial writes 0.0/1.0); others go record by record.
_CANONICAL_LABELS = {b"0": 0.0, b"1": 1.0, b"0.0": 0.0, b"1.0": 1.0}
FORMAT_HEADER = "streamtrain.format"
CSV_FORMAT = b"csv"  # also what a record without the header is
F32_FORMAT = b"f32"
F32_BLOCK_FORMAT = b"f32-block"
MAX_BLOCK_BYTES = 512 * 1024  # well under Kafka's default 1 MB record limit
F32 = np.dtype("<f4")


@dataclass
class BadRecord:
    index: int  # position in the batch
    reason: str  # "<kind>: detail", one line


@dataclass
class Decoded:
    features: np.ndarray  # float32 [n_good, width]
    labels: np.ndarray  # float32 [n_good]
    good: np.ndarray  # per row, the index into the batch of its record (rows of a block share it)
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


def encode_f32(features: np.ndarray) -> list[bytes]:
    """Each row as little-endian float32 bytes (send with the header streamtrain.format: f32)."""
    data = np.ascontiguousarray(features, dtype=F32)
    if data.ndim != 2 or data.shape[1] == 0:
        raise ValueError(f"expected a 2-d array with at least one column, got shape {data.shape}")
    raw, row = data.tobytes(), data.shape[1] * F32.itemsize
    return [raw[i:i + row] for i in range(0, len(raw), row)]


def block_rows(rows: int, width: int) -> int:
    """Rows a block of `width` features takes: at most `rows`, and no more than fit in MAX_BLOCK_BYTES."""
    return max(1, min(rows, MAX_BLOCK_BYTES // (width * F32.itemsize)))


def encode_f32_blocks(features: np.ndarray, labels: np.ndarray, rows: int) -> tuple[list[bytes], list[bytes]]:
    """Keys and values of f32-block records of up to `rows` rows each (send with streamtrain.format: f32-block)."""
    data = np.ascontiguousarray(features, dtype=F32)
    if data.ndim != 2 or data.shape[1] == 0 or len(labels) != len(data):
        raise ValueError(f"expected features [n, width>0] and n labels, got {data.shape} and {len(labels)}")
    rows = block_rows(rows, data.shape[1])
    label_bytes = np.where(np.asarray(labels) >= 0.5, ord("1"), ord("0")).astype(np.uint8).tobytes()
    raw, row_bytes = data.tobytes(), data.shape[1] * F32.itemsize
    starts = range(0, len(data), rows)
    return [label_bytes[i:i + rows] for i in starts], [raw[i * row_bytes:(i + rows) * row_bytes] for i in starts]


_BLOCK_LABELS = {b"0": b"0", b"1": b"1", b"0.0": b"0", b"1.0": b"1"}


def block_label(key: bytes) -> bytes:
    """The one-byte label of a row in an f32-block key, from a row's label key (which must be valid)."""
    return _BLOCK_LABELS.get(key) or (b"1" if decode_label(key) == 1.0 else b"0")


def decode_f32_block(key: bytes | None, value: bytes | None, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Decode one f32-block record into (rows [k, width], labels [k]) or raise ValueError('<kind>: <detail>')."""
    if not key:
        raise ValueError("missing-label: the block has no key (its labels)")
    if value is None or value == b"":
        raise ValueError("empty-value: the block has no value")
    if len(value) > MAX_BLOCK_BYTES:
        raise ValueError(f"oversized: block of {len(value)} bytes exceeds {MAX_BLOCK_BYTES}")
    k = len(key)
    if len(value) % (k * F32.itemsize):
        raise ValueError(f"wrong-column-count: {len(value)} bytes are not {k} rows (one per label) of whole "
                         "float32 features")
    found = len(value) // (k * F32.itemsize)
    if width is not None and found != width:
        raise ValueError(f"wrong-column-count: {found} float32 features a row, expected {width}")
    codes = np.frombuffer(key, np.uint8)
    wrong = np.flatnonzero((codes != ord("0")) & (codes != ord("1")))
    if wrong.size:
        raise ValueError(f"invalid-label: row {int(wrong[0])} of the block has label byte {key[int(wrong[0]):][:1]!r}, "
                         "not '0' or '1'")
    rows = np.frombuffer(value, dtype=F32).reshape(k, found)
    finite = np.isfinite(rows)
    if not finite.all():
        row, column = (int(v) for v in np.argwhere(~finite)[0])
        raise ValueError(f"non-finite: row {row} column {column} of the block is {rows[row, column]}")
    return rows.astype(np.float32), (codes == ord("1")).astype(np.float32)


Headers = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None


def record_format(headers: Headers) -> bytes | None:
    """The value format a record's headers declare (None: no header, i.e. CSV)."""
    if not headers:
        return None
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        if name == FORMAT_HEADER:
            return value.encode() if isinstance(value, str) else value
    return None


def decode_batch(keys: list[bytes | None], values: list[bytes | None], width: int | None,
                 formats: list[bytes | None] | None = None) -> tuple[Decoded, int | None]:
    """Decode a micro-batch; returns the result and the width (learnt from the first good row if None).

    formats: each record's declared format (record_format of its headers); None means all CSV.
    """
    n = len(values)
    if n == 0:
        w = width or 0
        return Decoded(np.zeros((0, w), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)), w
    if formats is not None and any(f is not None and f != CSV_FORMAT for f in formats):
        return _decode_mixed(keys, values, width, formats)
    if width is None:
        width = _first_width(values)
    fast = _decode_fast(keys, values, width) if width else None
    if fast is not None:
        return fast, width
    return _decode_slow(keys, values, width), width


def _decode_mixed(keys: list[bytes | None], values: list[bytes | None], width: int | None,
                  formats: list[bytes | None]) -> tuple[Decoded, int | None]:
    """A batch with f32 records (and maybe CSV ones, or unknown formats): each part by its decoder."""
    binary = [i for i, f in enumerate(formats) if f == F32_FORMAT]
    blocks = [i for i, f in enumerate(formats) if f == F32_BLOCK_FORMAT]
    if width is None:
        width = next((len(v) // F32.itemsize for i in binary if (v := values[i]) and len(v) % F32.itemsize == 0),
                     None) or _block_width(keys, values, blocks)
    if len(binary) == len(values):
        fast = _decode_f32_fast(keys, values, width) if width else None
        return (fast if fast is not None else _decode_f32_slow(keys, values, width, range(len(values)))), width
    if len(blocks) == len(values):
        return _decode_each(keys, values, width, blocks, decode_f32_block), width
    text = [i for i, f in enumerate(formats) if f is None or f == CSV_FORMAT]
    unknown = [i for i, f in enumerate(formats)
               if f is not None and f not in (CSV_FORMAT, F32_FORMAT, F32_BLOCK_FORMAT)]
    parts = [_decode_f32_slow(keys, values, width, binary), _decode_each(keys, values, width, blocks, decode_f32_block)]
    if text:
        part, width = decode_batch([keys[i] for i in text], [values[i] for i in text], width)
        index = np.array(text, np.int64)
        parts.append(Decoded(part.features, part.labels, index[part.good],
                             [BadRecord(text[b.index], b.reason) for b in part.bad]))
    bad = [BadRecord(i, f"unknown-format: header {FORMAT_HEADER} is {formats[i]!r}") for i in unknown]
    good = np.concatenate([p.good for p in parts])
    order = np.argsort(good, kind="stable")
    features = np.concatenate([p.features.reshape(-1, width or 0) for p in parts])[order]
    labels = np.concatenate([p.labels for p in parts])[order]
    bad = sorted([b for p in parts for b in p.bad] + bad, key=lambda b: b.index)
    return Decoded(features.astype(np.float32), labels.astype(np.float32), good[order], bad), width


def _block_width(keys: list[bytes | None], values: list[bytes | None], blocks: list[int]) -> int | None:
    for i in blocks:
        key, value = keys[i], values[i]
        if key and value and len(value) % (len(key) * F32.itemsize) == 0:
            return len(value) // (len(key) * F32.itemsize)
    return None


def _decode_f32_fast(keys: list[bytes | None], values: list[bytes | None], width: int) -> Decoded | None:
    n = len(values)
    try:
        if set(map(len, values)) != {width * F32.itemsize}:  # type: ignore[arg-type]  # None raises TypeError
            return None
    except TypeError:
        return None
    raw = b"".join(cast(list[bytes], values))
    x = np.frombuffer(raw, dtype=F32).reshape(n, width).astype(np.float32)  # native order, writable
    y = _labels_fast(keys)
    if y is None or not np.isfinite(x).all():
        return None
    return Decoded(x, y, np.arange(n))


def _labels_fast(keys: list[bytes | None]) -> np.ndarray | None:
    """Labels when every key is a canonical 0/1 spelling; None sends the batch record by record."""
    try:
        return np.array([_CANONICAL_LABELS[k] for k in keys], np.float32)  # type: ignore[index]
    except (KeyError, TypeError):
        return None


def _decode_f32_slow(keys: list[bytes | None], values: list[bytes | None], width: int | None,
                     indices: range | list[int]) -> Decoded:
    return _decode_each(keys, values, width, indices, decode_f32_record)


def _decode_each(keys: list[bytes | None], values: list[bytes | None], width: int | None,
                 indices: range | list[int], decode_one: Any) -> Decoded:
    """Record by record, naming each bad one: the path of batches that hold a bad record, and of blocks.

    decode_one returns (row, label) for a one-row record, (rows [k, width], labels [k]) for a block; every
    row of a block has the block's index in `good`.
    """
    rows: list[Any] = []
    labels: list[Any] = []
    good: list[Any] = []
    bad: list[BadRecord] = []
    block = decode_one is decode_f32_block
    for i in indices:
        try:
            row, label = decode_one(keys[i], values[i], width)
        except ValueError as exc:
            bad.append(BadRecord(i, str(exc)))
            continue
        if block and width is None:
            width = row.shape[1]  # the first good block sets the width for the others of the batch
        rows.append(row)
        labels.append(label)
        good.append(np.full(label.size, i, np.int64) if block else i)
    if block:
        if not rows:
            return Decoded(np.zeros((0, width or 0), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), bad)
        return Decoded(np.concatenate(rows), np.concatenate(labels), np.concatenate(good), bad)
    features = np.array(rows, np.float32).reshape(len(rows), width or 0)
    return Decoded(features, np.array(labels, np.float32), np.array(good, np.int64), bad)


def decode_f32_record(key: bytes | None, value: bytes | None, width: int | None) -> tuple[np.ndarray, float]:
    """Decode one f32 record or raise ValueError('<kind>: <detail>')."""
    if value is None or value == b"":
        raise ValueError("empty-value: the record has no value")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"oversized: value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    if len(value) % F32.itemsize:
        raise ValueError(f"wrong-column-count: {len(value)} bytes is not a whole number of float32 features")
    row = np.frombuffer(value, dtype=F32)
    if width is not None and row.size != width:
        raise ValueError(f"wrong-column-count: {row.size} float32 features, expected {width}")
    finite = np.isfinite(row)
    if not finite.all():
        column = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"non-finite: column {column} is {row[column]}")
    return row, decode_label(key)


def _first_width(values: list[bytes | None]) -> int | None:
    """The most common column count of the batch's numeric rows (the earliest on a tie): a malformed but
    numeric row at the start of a stream (say 3 columns of 18) must not set the width for good."""
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


def _decode_fast(keys: list[bytes | None], values: list[bytes | None], width: int) -> Decoded | None:
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
    y = _labels_fast(keys)  # any other spelling of a label is judged record by record
    if y is None or x.shape != (n, width) or not np.isfinite(x).all():
        return None  # empty or multi-line values change the row count
    return Decoded(x, y, np.arange(n))


def _decode_slow(keys: list[bytes | None], values: list[bytes | None], width: int | None) -> Decoded:
    return _decode_each(keys, values, width, range(len(values)), decode_record)


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

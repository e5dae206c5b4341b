"""f32-block: many rows in one record (header `streamtrain.format: f32-block`). Key = one ASCII '0' or '1' per
row, value = the rows' float32 features back to back.

Per-record costs (the client's message objects, the broker's per-record work) dominate consumption at 100k+
records/s on small rows; a block pays them once for hundreds of rows. A block is one Kafka record: it is trained,
checkpointed and dead-lettered whole.

>>> keys, values = encode_f32_blocks(np.array([[0.5, 2.0], [1.0, 3.0], [4.0, 5.0]]), np.array([0, 1, 1]), rows=2)
>>> keys
[b'01', b'1']
>>> rows, labels = decode_f32_block(keys[0], values[0], width=2)
>>> rows.tolist(), labels.tolist()
([[0.5, 2.0], [1.0, 3.0]], [0.0, 1.0])
>>> decode_f32_block(b"0x", values[0], width=2)
Traceback (most recent call last):
...
streamtrain.wire.base.BadRecordError: invalid-label: row 1 of the block has label byte b'x', not '0' or '1'
"""

from __future__ import annotations

import numpy as np

from streamtrain.wire.base import F32, BadRecordError, WireFormat
from streamtrain.wire.labels import decode_label

MAX_BLOCK_BYTES = 512 * 1024  # well under Kafka's default 1 MB record limit
_BLOCK_LABELS = {b"0": b"0", b"1": b"1", b"0.0": b"0", b"1.0": b"1"}


def block_rows(rows: int, width: int) -> int:
    """Rows a block of `width` features takes: at most `rows`, and no more than fit in MAX_BLOCK_BYTES."""
    return max(1, min(rows, MAX_BLOCK_BYTES // (width * F32.itemsize)))


def encode_f32_blocks(features: np.ndarray, labels: np.ndarray, rows: int) -> tuple[list[bytes], list[bytes]]:
    """Keys and values of f32-block records of up to `rows` rows each."""
    data = np.ascontiguousarray(features, dtype=F32)
    if data.ndim != 2 or data.shape[1] == 0 or len(labels) != len(data):
        raise ValueError(f"expected features [n, width>0] and n labels, got {data.shape} and {len(labels)}")
    rows = block_rows(rows, data.shape[1])
    label_bytes = np.where(np.asarray(labels) >= 0.5, ord("1"), ord("0")).astype(np.uint8).tobytes()
    raw, row_bytes = data.tobytes(), data.shape[1] * F32.itemsize
    starts = range(0, len(data), rows)
    return [label_bytes[i:i + rows] for i in starts], [raw[i * row_bytes:(i + rows) * row_bytes] for i in starts]


def block_label(key: bytes) -> bytes:
    """The one-byte label of a row in an f32-block key, from a row's label key (which must be valid)."""
    return _BLOCK_LABELS.get(key) or (b"1" if decode_label(key) == 1.0 else b"0")


def decode_f32_block(key: bytes | None, value: bytes | None, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One block's (rows [k, width], labels [k]); raises BadRecordError."""
    if not key:
        raise BadRecordError("missing-label", "the block has no key (its labels)")
    if value is None or value == b"":
        raise BadRecordError("empty-value", "the block has no value")
    if len(value) > MAX_BLOCK_BYTES:
        raise BadRecordError("oversized", f"block of {len(value)} bytes exceeds {MAX_BLOCK_BYTES}")
    k = len(key)
    if len(value) % (k * F32.itemsize):
        raise BadRecordError("wrong-column-count", f"{len(value)} bytes are not {k} rows (one per label) of whole "
                             "float32 features")
    found = len(value) // (k * F32.itemsize)
    if width is not None and found != width:
        raise BadRecordError("wrong-column-count", f"{found} float32 features a row, expected {width}")
    codes = np.frombuffer(key, np.uint8)
    wrong = np.flatnonzero((codes != ord("0")) & (codes != ord("1")))
    if wrong.size:
        raise BadRecordError("invalid-label", f"row {int(wrong[0])} of the block has label byte "
                             f"{key[int(wrong[0]):][:1]!r}, not '0' or '1'")
    rows = np.frombuffer(value, dtype=F32).reshape(k, found)
    finite = np.isfinite(rows)
    if not finite.all():
        row, column = (int(v) for v in np.argwhere(~finite)[0])
        raise BadRecordError("non-finite", f"row {row} column {column} of the block is {rows[row, column]}")
    return rows.astype(np.float32), (codes == ord("1")).astype(np.float32)


def width_of(keys: list[bytes | None], values: list[bytes | None]) -> int | None:
    """The width the first well-shaped block of the batch has."""
    for key, value in zip(keys, values, strict=True):
        if key and value and len(value) % (len(key) * F32.itemsize) == 0:
            return len(value) // (len(key) * F32.itemsize)
    return None


F32_BLOCK = WireFormat("f32-block", b"f32-block", "many", decode_f32_block, None)

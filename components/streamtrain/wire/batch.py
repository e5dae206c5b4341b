"""A micro-batch decoded at once, whatever mix of formats its records declare.

Decoding is vectorised for a batch of one format; a per-record pass runs only when the batch holds a bad record
(to name it and its reason) or mixes formats. Bad records come back in `Decoded.bad`, never raised.

>>> decoded, width = decode_batch([b"1", b"7", b"0"], [b"1,2", b"3,4", b"5,6"], width=None)
>>> width, decoded.features.tolist(), decoded.good.tolist()
(2, [[1.0, 2.0], [5.0, 6.0]], [0, 2])
>>> [bad.reason for bad in decoded.bad]
['invalid-label: 7 is not 0 or 1']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamtrain.wire import csv, f32, f32_block
from streamtrain.wire.base import F32, FORMAT_HEADER, BadRecord, BadRecordError, Decoded, WireFormat

F32_BYTES = F32.itemsize
CSV_FORMAT = b"csv"  # what a record without the header is, too
FORMATS: dict[bytes, WireFormat] = {wire.header or CSV_FORMAT: wire
                                   for wire in (csv.CSV, f32.F32_RECORD, f32_block.F32_BLOCK)}

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
    """Decode a micro-batch; returns the result and the width (learnt from the batch when None).

    formats: each record's declared format (record_format of its headers); None means all CSV.
    """
    if not values:
        return Decoded.empty(width), width or 0
    if formats is not None and any(f is not None and f != CSV_FORMAT for f in formats):
        return _decode_mixed(keys, values, width, formats)
    if width is None:
        width = csv.first_width(values)
    fast = csv.decode_many(keys, values, width) if width else None
    if fast is not None:
        return fast, width
    return decode_each(keys, values, width, range(len(values)), csv.CSV), width


def decode_unlabelled(values: list[bytes | None], width: int,
                     formats: list[bytes | None] | None = None) -> Decoded:
    """Decode feature rows that carry no label (the predictor's input: the key is an opaque id).

    The formats keep their label in the key; here each record gets a stand-in label key (one '0' per row of a
    block), so the same decoders judge the values. `Decoded.labels` means nothing in the result.

    >>> decoded = decode_unlabelled([b"1,2", b"3,x"], width=2)
    >>> decoded.features.tolist(), [bad.reason for bad in decoded.bad]
    ([[1.0, 2.0]], ["non-numeric: column 1 is 'x'"])
    """
    row_bytes = width * F32_BYTES
    block = f32_block.F32_BLOCK.header
    keys: list[bytes | None] = [
        b"0" * max(1, len(v) // row_bytes) if formats and formats[i] == block and v and len(v) % row_bytes == 0
        else b"0" for i, v in enumerate(values)]
    return decode_batch(keys, values, width, formats)[0]


def _decode_mixed(keys: list[bytes | None], values: list[bytes | None], width: int | None,
                  formats: list[bytes | None]) -> tuple[Decoded, int | None]:
    """A batch with binary records (and maybe CSV ones, or unknown formats): each part by its format."""
    row_header, block_header = f32.F32_RECORD.header, f32_block.F32_BLOCK.header  # looked up once, not per record
    binary = [i for i, f in enumerate(formats) if f == row_header]
    blocks = [i for i, f in enumerate(formats) if f == block_header]
    if width is None:
        width = (f32.width_of([values[i] for i in binary])
                 or f32_block.width_of([keys[i] for i in blocks], [values[i] for i in blocks]))
    if len(binary) == len(values):
        fast = f32.decode_many(keys, values, width) if width else None
        return (fast if fast is not None else decode_each(keys, values, width, binary, f32.F32_RECORD)), width
    if len(blocks) == len(values):
        return decode_each(keys, values, width, blocks, f32_block.F32_BLOCK), width
    text = [i for i, f in enumerate(formats) if f is None or f == CSV_FORMAT]
    unknown = [i for i, f in enumerate(formats) if f is not None and f not in FORMATS]
    parts = [decode_each(keys, values, width, binary, f32.F32_RECORD),
             decode_each(keys, values, width, blocks, f32_block.F32_BLOCK)]
    if text:
        part, width = decode_batch([keys[i] for i in text], [values[i] for i in text], width)
        index = np.array(text, np.int64)
        parts.append(Decoded(part.features, part.labels, index[part.good], [b.at(text[b.index]) for b in part.bad]))
    bad = [BadRecord(i, "unknown-format", f"header {FORMAT_HEADER} is {formats[i]!r}") for i in unknown]
    good = np.concatenate([p.good for p in parts])
    order = np.argsort(good, kind="stable")
    features = np.concatenate([p.features.reshape(-1, width or 0) for p in parts])[order]
    labels = np.concatenate([p.labels for p in parts])[order]
    bad = sorted([b for p in parts for b in p.bad] + bad, key=lambda b: b.index)
    return Decoded(features.astype(np.float32), labels.astype(np.float32), good[order], bad), width


def decode_each(keys: list[bytes | None], values: list[bytes | None], width: int | None,
                indices: range | list[int], wire: WireFormat) -> Decoded:
    """Record by record, naming each bad one. Every row of a many-row record has the record's index in `good`."""
    many = wire.rows_per_record == "many"
    rows: list[Any] = []
    labels: list[Any] = []
    good: list[Any] = []
    bad: list[BadRecord] = []
    for i in indices:
        try:
            row, label = wire.decode_one(keys[i], values[i], width)
        except BadRecordError as exc:
            bad.append(BadRecord(i, exc.kind, exc.detail))
            continue
        if many and width is None:
            width = row.shape[1]  # the first good block sets the width for the others of the batch
        rows.append(row)
        labels.append(label)
        good.append(np.full(label.size, i, np.int64) if many else i)
    if not rows:
        return Decoded.empty(width, bad)
    if many:
        return Decoded(np.concatenate(rows), np.concatenate(labels), np.concatenate(good), bad)
    features = np.array(rows, np.float32).reshape(len(rows), width or 0)
    return Decoded(features, np.array(labels, np.float32), np.array(good, np.int64), bad)

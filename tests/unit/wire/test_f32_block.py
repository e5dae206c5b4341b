"""The f32-block wire format: many float32 rows per record, decoded, checked and dead-lettered as one record."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamtrain import wire
from streamtrain.kafka.batches import to_batch, unseen
from streamtrain.service.config import ProducerSettings
from streamtrain.wire import (
    F32_BLOCK_FORMAT,
    F32_FORMAT,
    FORMAT_HEADER,
    decode_batch,
    encode_f32,
    encode_f32_blocks,
    encode_labels,
    encode_rows,
)
from tests.unit.wire.test_f32 import FakeMessage, arrays


def test_blocks_roundtrip_bit_exact_with_each_row_pointing_at_its_record() -> None:
    x, y = arrays(250, 18)
    keys, values = encode_f32_blocks(x, y, 100)
    assert [len(k) for k in keys] == [100, 100, 50]
    decoded, width = decode_batch(list(keys), list(values), None, [F32_BLOCK_FORMAT] * 3)
    assert width == 18 and decoded.bad == []
    np.testing.assert_array_equal(decoded.features, x)
    np.testing.assert_array_equal(decoded.labels, y)
    assert decoded.good.tolist() == [0] * 100 + [1] * 100 + [2] * 50
    assert decoded.features.flags.writeable


def test_a_block_stays_under_the_record_size_cap() -> None:
    x, y = arrays(10_000, 100)
    keys, values = encode_f32_blocks(x, y, 10_000)
    assert max(len(v) for v in values) <= wire.MAX_BLOCK_BYTES
    assert sum(len(k) for k in keys) == 10_000


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"01", np.ones((2, 3), "<f4").tobytes()[:-4], "wrong-column-count: 20 bytes are not 2 rows"),
    (b"0x", np.ones((2, 3), "<f4").tobytes(), "invalid-label: row 1 of the block has label byte b'x'"),
    (b"011", np.array([[1, 2, 3], [4, np.nan, 6], [7, 8, 9]], "<f4").tobytes(),
     "non-finite: row 1 column 1 of the block is nan"),
    (b"", np.ones((1, 3), "<f4").tobytes(), "missing-label"),
    (b"1", b"", "empty-value"),
    (b"1", np.ones((1, 4), "<f4").tobytes(), "wrong-column-count: 4 float32 features a row, expected 3"),
])
def test_a_bad_block_is_named_with_its_row_and_column(key: bytes, value: bytes, reason: str) -> None:
    good_keys, good_values = encode_f32_blocks(np.ones((2, 3), np.float32), np.array([0, 1]), 2)
    decoded, width = decode_batch([good_keys[0], key], [good_values[0], value], 3, [F32_BLOCK_FORMAT] * 2)
    assert width == 3 and decoded.good.tolist() == [0, 0]
    assert [b.index for b in decoded.bad] == [1]
    assert decoded.bad[0].reason.startswith(reason), decoded.bad[0].reason


@given(st.lists(st.tuples(st.sampled_from(["csv", "f32", "block"]), st.integers(1, 5), st.booleans()),
                min_size=1, max_size=12))
def test_any_mix_with_blocks_keeps_stream_order(plan: list[tuple[str, int, bool]]) -> None:
    """Rows come out in stream order whatever the formats; a bad record drops exactly its rows."""
    total = sum(rows if kind == "block" else 1 for kind, rows, _ in plan)
    x, y = arrays(total, 4, seed=total)
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    formats: list[bytes | None] = []
    expected: list[int] = []
    at = 0
    for index, (kind, rows, bad) in enumerate(plan):
        n = rows if kind == "block" else 1
        part_x, part_y = x[at:at + n], y[at:at + n]
        if kind == "block":
            k, v = encode_f32_blocks(part_x, part_y, n)
            key, value, fmt = k[0], v[0], F32_BLOCK_FORMAT
        elif kind == "f32":
            key, value, fmt = encode_labels(part_y)[0], encode_f32(part_x)[0], F32_FORMAT
        else:
            key, value, fmt = encode_labels(part_y)[0], encode_rows(part_x)[0], None
        if bad:
            value = value[:-4] if kind != "csv" else value + b",1"
        else:
            expected += list(range(at, at + n))
        keys.append(key)
        values.append(value)
        formats.append(fmt)
        at += n
        del index
    decoded, _ = decode_batch(keys, values, 4, formats if any(formats) else None)
    np.testing.assert_allclose(decoded.features, x[expected], rtol=1e-6)
    np.testing.assert_array_equal(decoded.labels, y[expected])
    assert [b.index for b in decoded.bad] == [i for i, (_, _, bad) in enumerate(plan) if bad]


def test_batches_of_blocks_keep_formats_and_drop_whole_records_already_seen() -> None:
    x, y = arrays(30, 2)
    keys, values = encode_f32_blocks(x, y, 10)
    messages = [FakeMessage(k, v, [(FORMAT_HEADER, F32_BLOCK_FORMAT)], offset=5 + i)
                for i, (k, v) in enumerate(zip(keys, values, strict=True))]
    batch = to_batch(messages, None)  # type: ignore[arg-type]
    assert batch.formats == [F32_BLOCK_FORMAT] * 3 and batch.decoded.labels.size == 30
    assert batch.timestamps[batch.decoded.good].max() == 1007
    rest, dropped = unseen(batch, {0: 6})  # the first block (offset 5) was handled already
    assert dropped == 1 and rest.offsets.tolist() == [6, 7] and rest.formats == [F32_BLOCK_FORMAT] * 2
    np.testing.assert_array_equal(rest.decoded.features, x[10:])
    assert rest.decoded.good.tolist() == [0] * 10 + [1] * 10


def test_block_label_accepts_every_valid_spelling() -> None:
    assert [wire.block_label(k) for k in (b"0", b"1", b"1.0", b"0.0", b"1.000", b" 0")] == [
        b"0", b"1", b"1", b"0", b"1", b"0"]


def test_the_producer_takes_f32_block_and_its_row_count() -> None:
    settings = ProducerSettings(wire_format="f32-block", block_rows=64)
    assert settings.block_rows == 64
    with pytest.raises(ValueError, match="block_rows"):
        ProducerSettings(wire_format="f32-block", block_rows=0)

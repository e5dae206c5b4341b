"""The binary wire format: float32 rows marked by the streamtrain.format header, mixed freely with CSV."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamtrain import wire
from streamtrain.kafka.batches import to_batch
from streamtrain.producer import sources
from streamtrain.service.config import ProducerSettings
from streamtrain.wire import F32_FORMAT, FORMAT_HEADER, decode_batch, encode_f32, encode_labels, encode_rows


def arrays(n: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.normal(0, 1, (n, width)) * 10.0 ** rng.integers(-8, 8, (n, width))).astype(np.float32)
    return x, (rng.random(n) < 0.5).astype(np.float32)


def test_f32_roundtrip_is_bit_exact_and_learns_the_width() -> None:
    x, y = arrays(100, 18)
    values = encode_f32(x)
    assert all(len(v) == 18 * 4 for v in values)
    decoded, width = decode_batch(encode_labels(y), values, None, [F32_FORMAT] * 100)
    assert width == 18 and decoded.bad == []
    assert decoded.features.dtype == np.float32 and decoded.features.flags.writeable
    np.testing.assert_array_equal(decoded.features, x)
    np.testing.assert_array_equal(decoded.labels, y)
    np.testing.assert_array_equal(decoded.good, np.arange(100))


def test_encode_f32_refuses_a_row_without_columns() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        encode_f32(np.zeros((3, 0), np.float32))


def test_mixed_batch_keeps_record_order_and_names_each_bad_record() -> None:
    x, y = arrays(10, 3)
    keys: list[bytes | None] = list(encode_labels(y))
    binary, text = encode_f32(x), encode_rows(x)
    values: list[bytes | None] = [binary[i] if i % 2 else text[i] for i in range(10)]
    formats: list[bytes | None] = [F32_FORMAT if i % 2 else None for i in range(10)]
    values[3] = binary[3][:-4]  # one feature short
    values[4] = b"1,x,3"
    values[5] = np.array([1, np.inf, 2], "<f4").tobytes()
    formats[7] = b"parquet"
    keys[9] = None
    decoded, width = decode_batch(keys, values, None, formats)
    assert width == 3
    assert decoded.good.tolist() == [0, 1, 2, 6, 8]
    np.testing.assert_allclose(decoded.features, x[decoded.good], rtol=1e-6)
    np.testing.assert_array_equal(decoded.labels, y[decoded.good])
    reasons = {b.index: b.kind for b in decoded.bad}
    assert reasons == {3: "wrong-column-count", 4: "non-numeric", 5: "non-finite", 7: "unknown-format",
                       9: "missing-label"}


def test_f32_width_is_enforced_once_known() -> None:
    decoded, width = decode_batch([b"1"], [encode_f32(np.ones((1, 4)))[0]], 5, [F32_FORMAT])
    assert width == 5 and decoded.good.size == 0
    assert decoded.bad[0].reason == "wrong-column-count: 4 float32 features, expected 5"
    decoded, _ = decode_batch([b"1"], [b"abc"], 5, [F32_FORMAT])
    assert decoded.bad[0].reason.startswith("wrong-column-count: 3 bytes")
    decoded, _ = decode_batch([b"1"], [b""], 5, [F32_FORMAT])
    assert decoded.bad[0].reason.startswith("empty-value")


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=1, max_size=40))
def test_any_mix_decodes_like_record_by_record(plan: list[tuple[bool, int]]) -> None:
    """Batched decoding of any mix of formats and faults equals decoding each record alone."""
    x, y = arrays(len(plan), 4, seed=len(plan))
    keys: list[bytes | None] = list(encode_labels(y))
    values: list[bytes | None] = []
    formats: list[bytes | None] = []
    for i, (binary, fault) in enumerate(plan):
        value = encode_f32(x[i:i + 1])[0] if binary else encode_rows(x[i:i + 1])[0]
        if fault == 1:
            value = value[:-4] if binary else value + b",1"
        elif fault == 2:
            value = b""
        elif fault == 3:
            keys[i] = b"2"
        values.append(value)
        formats.append(F32_FORMAT if binary else None)
    decoded, _ = decode_batch(keys, values, 4, formats)
    expected_good = [i for i, (_, fault) in enumerate(plan) if fault in (0, 4)]
    assert decoded.good.tolist() == expected_good
    assert [b.index for b in decoded.bad] == [i for i in range(len(plan)) if i not in expected_good]
    np.testing.assert_allclose(decoded.features, x[expected_good], rtol=1e-6)


def test_record_format_reads_the_header() -> None:
    assert wire.record_format(None) is None
    assert wire.record_format([]) is None
    assert wire.record_format([("other", b"x"), (FORMAT_HEADER, b"f32")]) == b"f32"
    assert wire.record_format({FORMAT_HEADER: "f32"}) == b"f32"


class FakeMessage:
    def __init__(self, key: bytes, value: bytes, headers: Any, offset: int) -> None:
        self._key, self._value, self._headers, self._offset = key, value, headers, offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Any:
        return self._headers

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000 + self._offset)


def test_to_batch_decodes_by_each_records_header() -> None:
    x, y = arrays(6, 2)
    binary, text, keys = encode_f32(x), encode_rows(x), encode_labels(y)
    messages = [FakeMessage(keys[i], binary[i], [(FORMAT_HEADER, F32_FORMAT)], i) if i < 3
                else FakeMessage(keys[i], text[i], None, i) for i in range(6)]
    batch = to_batch(messages, None)  # type: ignore[arg-type]
    assert batch.width == 2 and batch.decoded.bad == []
    np.testing.assert_allclose(batch.decoded.features, x, rtol=1e-6)
    assert batch.timestamps.tolist() == [1000, 1001, 1002, 1003, 1004, 1005]


def test_generators_and_csv_files_produce_f32_when_asked(tmp_path: Any) -> None:
    chunk = next(sources.from_settings(ProducerSettings(source="susy", wire_format="f32")))
    assert chunk.formats is not None and set(chunk.formats) == {F32_FORMAT}
    decoded, width = decode_batch(list(chunk.keys), list(chunk.values), None, chunk.formats)
    assert width == 18 and decoded.bad == [] and len(decoded.good) == len(chunk.values)

    path = tmp_path / "rows.csv"
    path.write_text("1,0.5,2\n0,oops,3\n1,1e3,-4\n")
    settings = ProducerSettings(source="csv", csv_path=path, wire_format="f32")
    chunk = next(sources.from_settings(settings))
    assert chunk.formats == [F32_FORMAT, None, F32_FORMAT]  # the bad row stays CSV: consumers name its fault
    assert chunk.values[1] == b"oops,3"
    decoded, _ = decode_batch(list(chunk.keys), list(chunk.values), None, chunk.formats)
    np.testing.assert_array_equal(decoded.features, np.array([[0.5, 2], [1e3, -4]], np.float32))
    assert [b.index for b in decoded.bad] == [1]

"""The wire codec: CSV feature rows as values, 0/1 labels as keys; bad records named with their reason."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamtrain import wire
from streamtrain.wire import MAX_VALUE_BYTES, BadRecordError, decode_batch, decode_record, encode_labels, encode_rows


def roundtrip(features: np.ndarray, labels: np.ndarray,
              width: int | None = None) -> tuple[wire.Decoded, int]:
    return decode_batch(encode_labels(labels), encode_rows(features), width)


def test_encode_rows_is_one_csv_line_per_row() -> None:
    rows = encode_rows(np.array([[1.5, -2.0, 0.0], [1e-8, 3.25e10, 7.0]], np.float32))
    assert rows == [b"1.5,-2,0", b"1e-08,3.25e+10,7"]
    assert encode_labels(np.array([0.0, 1.0, 1.0])) == [b"0", b"1", b"1"]
    assert encode_labels(np.array([False, True])) == [b"0", b"1"]


def test_roundtrip_at_float32_precision() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 1, (64, 7)) * 10.0 ** rng.integers(-6, 7, (64, 7))).astype(np.float32)
    y = (rng.random(64) < 0.5).astype(np.float32)
    decoded, width = roundtrip(x, y)
    assert width == 7
    assert decoded.bad == []
    assert decoded.features.dtype == np.float32 and decoded.labels.dtype == np.float32
    np.testing.assert_allclose(decoded.features, x, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(decoded.labels, y)
    np.testing.assert_array_equal(decoded.good, np.arange(64))


def test_width_is_inferred_from_first_usable_row_and_kept() -> None:
    keys = [b"1", b"0", b"1"]
    values = [b"oops", b"1,nan,3", b"1,2,3,4"]
    decoded, width = decode_batch(keys, values, None)
    assert width == 4  # row 0 is not numeric, row 1 not finite: the width comes from row 2
    assert decoded.good.tolist() == [2]
    # Once known, the width is enforced: a 3-column row is now wrong.
    decoded, width = decode_batch([b"1"], [b"1,2,3"], width)
    assert width == 4
    assert [b.kind for b in decoded.bad] == ["wrong-column-count"]


def test_empty_batch() -> None:
    decoded, width = decode_batch([], [], None)
    assert width == 0 and decoded.features.shape == (0, 0) and decoded.good.size == 0
    decoded, width = decode_batch([], [], 5)
    assert width == 5 and decoded.features.shape == (0, 5)


BAD_CASES = [
    ("empty-value", b"1", None),
    ("empty-value", b"1", b""),
    ("oversized", b"1", b"1," * (MAX_VALUE_BYTES // 2) + b"1"),
    ("not-utf8", b"1", b"1,\xff\xfe,3"),
    ("multiple-rows", b"1", b"1,2,3\n4,5,6"),
    ("multiple-rows", b"1", b"1,2,3\r4,5,6"),
    ("wrong-column-count", b"1", b"1,2"),
    ("wrong-column-count", b"1", b"1,2,3,4"),
    ("non-numeric", b"1", b"1,two,3"),
    ("non-numeric", b"1", b"1,,3"),
    ("non-finite", b"1", b"1,nan,3"),
    ("non-finite", b"1", b"inf,2,3"),
    ("non-finite", b"1", b"1,2,-Infinity"),
    ("missing-label", None, b"1,2,3"),
    ("missing-label", b"", b"1,2,3"),
    ("invalid-label", b"yes", b"1,2,3"),
    ("invalid-label", b"2", b"1,2,3"),
    ("invalid-label", b"-1", b"1,2,3"),
    ("invalid-label", b"0.5", b"1,2,3"),
    ("invalid-label", b"\xff", b"1,2,3"),
]


@pytest.mark.parametrize(("kind", "key", "value"), BAD_CASES,
                         ids=[f"{k}-{v[:12]!r}-{key!r}" for k, key, v in
                              ((k, key, v if v is not None else b"None") for k, key, v in BAD_CASES)])
def test_bad_record_kinds(kind: str, key: bytes | None, value: bytes | None) -> None:
    with pytest.raises(BadRecordError) as caught:
        decode_record(key, value, 3)
    reason = str(caught.value)
    assert caught.value.kind == kind and reason.startswith(f"{kind}: ")
    assert "\n" not in reason
    # The same verdict inside a batch, alone or between good records.
    for keys, values, index in (([key], [value], 0), ([b"0", key, b"1"], [b"4,5,6", value, b"7,8,9"], 1)):
        decoded, _ = decode_batch(keys, values, 3)
        assert [(b.index, b.kind) for b in decoded.bad] == [(index, kind)]
        assert index not in decoded.good.tolist()
        assert len(decoded.good) == len(values) - 1


def test_good_records_of_a_mixed_batch_are_kept_in_order() -> None:
    keys = [b"1", b"0", None, b"1", b"2", b"0", b"1", b"0"]
    values = [b"1,2", b"3,4", b"5,6", b"x,8", b"9,10", b"11,12\n13,14", b"", b"15,16"]
    decoded, width = decode_batch(keys, values, None)
    assert width == 2
    assert decoded.good.tolist() == [0, 1, 7]
    np.testing.assert_array_equal(decoded.features, np.array([[1, 2], [3, 4], [15, 16]], np.float32))
    np.testing.assert_array_equal(decoded.labels, np.array([1, 0, 0], np.float32))
    assert [(b.index, b.kind) for b in decoded.bad] == [
        (2, "missing-label"), (3, "non-numeric"), (4, "invalid-label"), (5, "multiple-rows"),
        (6, "empty-value")]


def test_trailing_newline_and_spaces_are_tolerated_the_same_way_in_both_paths() -> None:
    values = [b"1, 2\n", b" 3,4\r\n"]
    fast, _ = decode_batch([b"1", b"0"], values, 2)
    # A bad record in the batch forces the per-record pass.
    slow, _ = decode_batch([b"1", b"0", None], [*values, b"5,6"], 2)
    np.testing.assert_array_equal(fast.features, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(slow.features, fast.features)


def test_float32_overflow_is_not_a_good_row() -> None:
    """1e39 is finite as a Python float but inf in float32: it must not reach the model as inf."""
    for keys, values in (([b"1"], [b"1e39,0"]), ([b"1", None], [b"1e39,0", b"1,2"])):
        decoded, _ = decode_batch(keys, values, 2)
        assert np.isfinite(decoded.features).all(), decoded
        assert 0 not in decoded.good.tolist()
        assert decoded.bad[0].index == 0 and decoded.bad[0].reason.startswith("non-finite")


@pytest.mark.parametrize("key", [b"1e-50", b"1.00000001", b"1\x00"])
def test_label_verdict_does_not_depend_on_the_rest_of_the_batch(key: bytes) -> None:
    """A label that is not exactly 0 or 1 is invalid whether or not the batch holds another bad record."""
    with pytest.raises(ValueError, match=r"^invalid-label"):
        decode_record(key, b"1,2", 2)
    alone, _ = decode_batch([key], [b"1,2"], 2)
    assert alone.good.tolist() == [], f"fast path accepted key {key!r} as label {alone.labels.tolist()}"
    assert [b.kind for b in alone.bad] == ["invalid-label"]


# --- properties --------------------------------------------------------------------------------------------

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
# Deterministic examples (no flaky CI), no example database in the work tree, no deadline (first call is slow).
PROPERTY = settings(deadline=None, derandomize=True, database=None)


@settings(PROPERTY, max_examples=150)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
                  elements=finite32),
       st.data())
def test_property_finite_float32_matrices_roundtrip(x: np.ndarray, data: st.DataObject) -> None:
    labels = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(x), max_size=len(x)))
    y = np.array(labels, np.float32)
    decoded, width = roundtrip(x, y)
    assert width == x.shape[1]
    assert decoded.bad == []
    np.testing.assert_array_equal(decoded.good, np.arange(len(x)))
    np.testing.assert_array_equal(decoded.labels, y)
    # 7 significant digits: within a few float32 ulps (subnormals: within their fixed spacing).
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    np.testing.assert_allclose(decoded.features, x, rtol=6e-7, atol=tiny)


numberish = st.lists(st.sampled_from([b"0", b"1", b"-2.5", b"1e3", b"nan", b"inf", b",", b" ", b"\n", b"\r",
                                      b"x", b"\xff", b"\x00", b"1e39", b"."]), max_size=12).map(b"".join)
blobs = st.one_of(st.none(), st.binary(max_size=40), numberish, st.sampled_from([b"1,2", b"3,4", b"0", b"1"]))


@settings(PROPERTY, max_examples=300)
@given(st.lists(st.tuples(blobs, blobs), max_size=12), st.one_of(st.none(), st.integers(1, 4)))
def test_property_random_bytes_never_raise(records: list[tuple[bytes | None, bytes | None]],
                                           width: int | None) -> None:
    keys = [k for k, _ in records]
    values = [v for _, v in records]
    decoded, learnt = decode_batch(keys, values, width)
    n = len(records)
    good = decoded.good.tolist()
    bad = [b.index for b in decoded.bad]
    assert len(good) + len(bad) == n
    assert sorted(good + bad) == list(range(n))
    assert good == sorted(good)
    assert decoded.features.shape == (len(good), learnt or 0) or (not good and decoded.features.shape[0] == 0)
    assert decoded.labels.shape == (len(good),)
    assert set(decoded.labels.tolist()) <= {0.0, 1.0}
    assert all(isinstance(b.reason, str) and "\n" not in b.reason for b in decoded.bad)
    if width is not None:
        assert learnt == width

"""Producer sources: reproducible generators, CSV parsing (header, gzip, label column), concept drift."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from streamtrain.producer import sources
from streamtrain.producer.sources import Chunk
from streamtrain.service.config import ProducerSettings
from streamtrain.wire import decode_batch


def take(chunks: object, n: int) -> list[Chunk]:
    return list(itertools.islice(chunks, n))  # type: ignore[call-overload]


def rows(chunks: list[Chunk]) -> tuple[list[bytes], list[bytes]]:
    return [k for c in chunks for k in c.keys], [v for c in chunks for v in c.values]


def decoded(chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
    result, _ = decode_batch(list(chunk.keys), list(chunk.values), None)
    assert result.bad == []
    return result.features, result.labels


# --- generators --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda seed: sources.susy_like(seed),
    lambda seed: sources.drift(seed, [3000]),
    lambda seed: sources.breast_cancer(seed, passes=2),
], ids=["susy", "drift", "breast-cancer"])
def test_seeded_generators_are_reproducible(make: object) -> None:
    a = take(make(7), 2)  # type: ignore[operator]
    b = take(make(7), 2)  # type: ignore[operator]
    c = take(make(8), 2)  # type: ignore[operator]
    assert rows(a) == rows(b)
    assert rows(a)[1] != rows(c)[1]
    assert len(rows(a)[1]) == len(rows(c)[1])


def test_susy_like_shape_and_balance() -> None:
    chunk = next(sources.susy_like(1))
    x, y = decoded(chunk)
    assert x.shape == (sources.CHUNK, 18)
    assert set(chunk.keys) == {b"0", b"1"}
    assert 0.4 < y.mean() < 0.52
    assert decoded(next(sources.susy_like(1, n_features=5)))[0].shape[1] == 5
    assert decoded(next(sources.susy_like(1, n_features=25)))[0].shape[1] == 25


def test_susy_like_is_learnable_but_overlapping() -> None:
    x, y = decoded(next(sources.susy_like(2)))
    clf = LogisticRegression(max_iter=1000).fit(x[:3000], y[:3000])
    assert 0.7 < clf.score(x[3000:], y[3000:]) < 0.95


def test_breast_cancer_passes() -> None:
    chunks = take(sources.breast_cancer(seed=3, passes=2), 5)
    assert len(chunks) == 2  # finite: exactly two passes
    first, second = (decoded(c) for c in chunks)
    for x, y in (first, second):
        assert x.shape == (569, 30)
        assert int(y.sum()) == 357  # benign
    assert chunks[0].values != chunks[1].values  # shuffled anew on each pass ...
    assert sorted(chunks[0].values) == sorted(chunks[1].values)  # ... over the same rows


def drift_xy(seed: int, points: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    chunks = take(sources.drift(seed, points), -(-n // sources.CHUNK))
    xs, ys = zip(*(decoded(c) for c in chunks), strict=True)
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def test_abrupt_drift_changes_the_concept() -> None:
    point = 3000
    x, y = drift_xy(0, [point], 6000)
    assert x.shape == (6000, sources.DRIFT_FEATURES)
    before = LogisticRegression().fit(x[:2500], y[:2500])
    assert before.score(x[2500:point], y[2500:point]) > 0.9  # the concept is learnable ...
    assert before.score(x[point:], y[point:]) < 0.6  # ... and after the point it no longer holds
    after = LogisticRegression().fit(x[point:5000], y[point:5000])
    assert after.score(x[5000:], y[5000:]) > 0.9  # the new concept is learnable too
    # Without a drift point the old model keeps working.
    x0, y0 = drift_xy(0, [], 6000)
    stable = LogisticRegression().fit(x0[:2500], y0[:2500])
    assert stable.score(x0[point:], y0[point:]) > 0.9


def test_gradual_drift_blends_over_the_whole_width() -> None:
    """Documented: a gradual drift blends towards the next concept over [p - width/2, p + width/2)."""
    rng = np.random.default_rng(0)
    old, new = np.ones(4), -np.ones(4)  # opposite concepts: every record tells which one labelled it
    point, width = 20_000, 8_000
    x, y = sources.drift_arrays(rng, 0, 40_000, [old, new], [point], "gradual", width, label_noise=0.0)
    by_new = (((x @ new) > 0) == (y == 1)).astype(float)
    assert by_new[: point - width // 2].mean() == 0.0  # before the window: the old concept
    assert by_new[point + width // 2:].mean() == 1.0  # after it: the new one
    # The share of the new concept rises linearly across the window: 1/4 and 3/4 in its two halves.
    assert by_new[point - width // 2: point].mean() == pytest.approx(0.25, abs=0.03)
    assert by_new[point: point + width // 2].mean() == pytest.approx(0.75, abs=0.03)


# --- CSV ---------------------------------------------------------------------------------------------------

BODY = ["1,0.5,0.25,3", "0,1.5,2.5,-1", "1,7,8,9"]


def write_csv(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("header", [False, True], ids=["no-header", "header"])
def test_csv_header_auto_and_gzip(tmp_path: Path, gz: bool, header: bool) -> None:
    lines = (["label,a,b,c"] if header else []) + BODY
    path = write_csv(tmp_path / ("d.csv.gz" if gz else "d.csv"), lines, gz)
    chunks = list(sources.csv_file(path))
    assert rows(chunks) == ([b"1", b"0", b"1"], [b"0.5,0.25,3", b"1.5,2.5,-1", b"7,8,9"])
    assert all(c.bad == [] for c in chunks)


def test_csv_header_yes_and_no(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", BODY)
    assert rows(list(sources.csv_file(path, header="yes")))[1] == [b"1.5,2.5,-1", b"7,8,9"]
    text = write_csv(tmp_path / "h.csv", ["label,a,b,c", *BODY])
    keys, values = rows(list(sources.csv_file(text, header="no")))
    assert (keys[0], values[0]) == (b"label", b"a,b,c")  # sent as it is; the trainer dead-letters it
    assert len(values) == 4


@pytest.mark.parametrize(("column", "keys", "values"), [
    (0, [b"1", b"0"], [b"2,3,1", b"6,7,0"]),
    (-1, [b"1", b"0"], [b"1,2,3", b"0,6,7"]),
    (2, [b"3", b"7"], [b"1,2,1", b"0,6,0"]),
    (-2, [b"3", b"7"], [b"1,2,1", b"0,6,0"]),
])
def test_csv_label_column(tmp_path: Path, column: int, keys: list[bytes], values: list[bytes]) -> None:
    path = write_csv(tmp_path / "d.csv", ["1,2,3,1", "0,6,7,0"])
    assert rows(list(sources.csv_file(path, label_column=column))) == (keys, values)


def test_csv_susy_style_labels_are_normalised(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "susy.csv", [
        "1.000000000000000000e+00,8.728375434875488281e-01,-6.350919604301452637e-01",
        "0.000000000000000000e+00,1.667973041534423828e+00,6.419061869382858276e-02",
        "2.5,1,2",
    ])
    keys, values = rows(list(sources.csv_file(path)))
    assert keys == [b"1", b"0", b"2.5"]  # a label that is not 0/1 passes through for the trainer to refuse
    assert values[0] == b"8.728375434875488281e-01,-6.350919604301452637e-01"


def test_csv_passes(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv.gz", BODY, gz=True)
    one = rows(list(sources.csv_file(path, passes=1)))
    two = rows(list(sources.csv_file(path, passes=2)))
    assert two == (one[0] * 2, one[1] * 2)
    endless = sources.csv_file(path, passes=0)
    assert len(rows(take(endless, 7))[1]) == 21


def test_csv_bad_rows_blank_lines_crlf_and_chunking(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"1,2,3\r\n\r\n1\n0,4,5\r\n")
    chunks = list(sources.csv_file(path))
    assert rows(chunks) == ([b"1", b"0"], [b"2,3", b"4,5"])
    assert [(b.where, b.raw, b.kind) for c in chunks for b in c.bad] == [
        ("d.csv:3", b"1", "wrong-column-count")]
    short = write_csv(tmp_path / "s.csv", ["1,2,3", "4,5"])
    bad = [b for c in sources.csv_file(short, label_column=2) for b in c.bad]
    assert [(b.where, b.kind) for b in bad] == [("s.csv:2", "missing-label")]
    big = write_csv(tmp_path / "big.csv", [f"{i % 2},{i}" for i in range(sources.CHUNK + 10)])
    sizes = [len(c.values) for c in sources.csv_file(big)]
    assert sizes == [sources.CHUNK, 10]


def test_from_settings_picks_the_source(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", BODY)
    csv = ProducerSettings(source="csv", csv_path=path, passes=2)
    assert len(rows(list(sources.from_settings(csv)))[1]) == 6
    drift = ProducerSettings(source="drift", drift_points=[10], n_features=3, seed=1)
    assert rows(take(sources.from_settings(drift), 1)) == rows(take(sources.drift(1, [10], n_features=3), 1))
    susy = ProducerSettings(source="susy", seed=4)
    assert rows(take(sources.from_settings(susy), 1)) == rows(take(sources.susy_like(4), 1))

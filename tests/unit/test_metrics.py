"""Stream metrics against scikit-learn: AUC with ties, log loss, accuracy; the sliding window."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.metrics import log_loss as sk_log_loss

from streamtrain import metrics
from streamtrain.metrics import Totals, Window


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    labels = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.float32)
    labels[0], labels[1] = 0, 1  # both classes present
    if ties:
        p = (rng.integers(0, 5, n) / 4).astype(np.float32)  # few distinct scores: many ties
    else:
        p = np.clip(rng.normal(0.5 + 0.2 * (labels - 0.5), 0.3), 0, 1).astype(np.float32)
    got = metrics.auc(p, labels)
    assert got is not None
    assert got == pytest.approx(roc_auc_score(labels, p), abs=1e-12)


def test_auc_edge_cases() -> None:
    y = np.array([0, 0, 1, 1], np.float32)
    assert metrics.auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert metrics.auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert metrics.auc(np.full(4, 0.5), y) == 0.5  # all tied
    assert metrics.auc(np.array([0.3, 0.6, 0.6, 0.9]), y) == pytest.approx(0.875)
    assert metrics.auc(np.array([0.1, 0.9]), np.array([1.0, 1.0])) is None
    assert metrics.auc(np.array([0.1, 0.9]), np.array([0.0, 0.0])) is None
    assert metrics.auc(np.zeros(0), np.zeros(0)) is None


def test_log_loss_matches_sklearn_and_clips() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 200)
    y = (rng.random(200) < 0.5).astype(np.float64)
    assert metrics.log_loss(p, y).mean() == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    extreme = metrics.log_loss(np.array([0.0, 1.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0, 0.0]))
    assert np.isfinite(extreme).all()
    assert extreme[0] == pytest.approx(-np.log(metrics.EPS), rel=1e-6)
    assert extreme[2] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("size", [1, 10, 50])
def test_window_keeps_exactly_the_last_n_over_uneven_chunks(size: int) -> None:
    rng = np.random.default_rng(size)
    window = Window(size)
    all_p: list[np.ndarray] = []
    all_y: list[np.ndarray] = []
    for chunk in [3, 17, 60, 1, 0, 25, 49, 51, 7, 1, 1, 120, 2]:
        p = rng.random(chunk)
        y = (rng.random(chunk) < 0.5).astype(np.float64)
        window.add(p, y)
        all_p.append(p)
        all_y.append(y)
        want_p, want_y = np.concatenate(all_p)[-size:], np.concatenate(all_y)[-size:]
        got_p, got_y = window.arrays()
        np.testing.assert_array_equal(got_p, want_p)
        np.testing.assert_array_equal(got_y, want_y)
        summary = window.summary()
        assert summary["records"] == want_y.size
        if want_y.size:
            assert summary["accuracy"] == pytest.approx(accuracy_score(want_y, want_p >= 0.5))
            assert summary["loss"] == pytest.approx(metrics.log_loss(want_p, want_y).mean())
            assert summary["auc"] == metrics.auc(want_p, want_y)
    # Memory stays bounded: the chunks held cover little more than the window.
    assert sum(c[1].size for c in window._chunks) < size + 120


def test_empty_window() -> None:
    window = Window(10)
    window.add(np.zeros(0), np.zeros(0))
    assert window.summary() == {"records": 0, "accuracy": None, "loss": None, "auc": None}


def test_totals_accumulate() -> None:
    totals = Totals()
    assert totals.accuracy is None and totals.loss is None and totals.records == 0
    rng = np.random.default_rng(7)
    ps, ys = [], []
    for n in (5, 0, 40, 13):
        p = rng.uniform(0.05, 0.95, n)
        y = (rng.random(n) < 0.4).astype(np.float64)
        totals.add(p, y)
        ps.append(p)
        ys.append(y)
    p_all, y_all = np.concatenate(ps), np.concatenate(ys)
    assert totals.records == 58
    assert totals.correct == int(((p_all >= 0.5) == (y_all == 1)).sum())
    assert totals.accuracy == pytest.approx(accuracy_score(y_all, p_all >= 0.5))
    assert totals.loss == pytest.approx(sk_log_loss(y_all, p_all), rel=1e-9)

"""Drift detectors on synthetic 0/1 error streams with known change points.

Streams are Bernoulli errors with fixed seeds, fed in batches of 64 (the trainer feeds one batch
at a time). Stated delays are in records after the change, at the default sensitivity
(ADWIN delta 0.002; Page-Hinkley lambda 80, delta 0.02). Measured worst cases over 30 seeds: ADWIN 96,
224 and 864 records for the three sizes of rise; Page-Hinkley 224, 544 and 1,440.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamtrain.trainer import drift

BATCH = 64
SEEDS = range(10)
DETECTORS = {"adwin": lambda: drift.Adwin(), "page-hinkley": lambda: drift.PageHinkley()}


def errors(rng: np.random.Generator, segments: list[tuple[int, float]]) -> np.ndarray:
    """Concatenated Bernoulli segments: [(records, error rate), ...]."""
    return np.concatenate([rng.random(n) < p for n, p in segments]).astype(np.float64)


def rises(detector: drift.Detector, stream: np.ndarray) -> list[int]:
    """Stream positions (end of the batch) where the detector reported a rise of the error."""
    found = []
    for start in range(0, stream.size, BATCH):
        change = detector.update(stream[start:start + BATCH])
        if change is not None and change.increase:
            found.append(start + min(BATCH, stream.size - start))
    return found


# (error before, error after, max delay in records) per detector.
ABRUPT = {
    "adwin": [(0.05, 0.5, 256), (0.1, 0.3, 512), (0.2, 0.3, 2000)],
    "page-hinkley": [(0.05, 0.5, 400), (0.1, 0.3, 1000), (0.2, 0.3, 2500)],
}


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_abrupt_rise_is_detected_within_the_stated_delay_and_only_once(kind: str) -> None:
    change_at = 20_000
    for before, after, max_delay in ABRUPT[kind]:
        for seed in SEEDS:
            stream = errors(np.random.default_rng(seed), [(change_at, before), (20_000, after)])
            found = rises(DETECTORS[kind](), stream)
            assert found, f"{kind}: {before}->{after} seed {seed}: not detected"
            assert change_at < found[0] <= change_at + max_delay, (kind, before, after, seed, found)
            assert len(found) == 1, f"{kind}: {before}->{after} seed {seed}: alarms at {found}"


@pytest.mark.parametrize("kind", sorted(DETECTORS))
@pytest.mark.parametrize("rate", [0.02, 0.3, 0.5])
def test_stationary_stream_of_the_same_length_raises_no_alarm(kind: str, rate: float) -> None:
    for seed in SEEDS:
        stream = errors(np.random.default_rng(1000 + seed), [(40_000, rate)])
        assert rises(DETECTORS[kind](), stream) == [], f"{kind}: false alarm at rate {rate}, seed {seed}"


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_several_changes_each_rise_found_and_a_fall_is_not_a_drift(kind: str) -> None:
    """0.1 -> 0.4 at 10k (rise), back to 0.1 at 20k (the model got better: no alarm), 0.35 at 30k (rise)."""
    for seed in SEEDS:
        stream = errors(np.random.default_rng(2000 + seed),
                        [(10_000, 0.1), (10_000, 0.4), (10_000, 0.1), (10_000, 0.35)])
        found = rises(DETECTORS[kind](), stream)
        assert len(found) == 2, (kind, seed, found)
        # Page-Hinkley compares with its mean since the last alarm, which the 0.4 stretch raised: slower.
        limit = 600 if kind == "adwin" else 1600
        assert 10_000 < found[0] <= 10_000 + limit and 30_000 < found[1] <= 30_000 + limit, (kind, seed, found)


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_gradual_rise_is_detected_during_the_ramp(kind: str) -> None:
    """The error climbs linearly from 0.1 to 0.4 over 4,000 records starting at 10,000."""
    for seed in SEEDS:
        rng = np.random.default_rng(3000 + seed)
        ramp = rng.random(4000) < np.linspace(0.1, 0.4, 4000)
        stream = np.concatenate([rng.random(10_000) < 0.1, ramp, rng.random(6000) < 0.4]).astype(np.float64)
        found = rises(DETECTORS[kind](), stream)
        assert found and 10_000 < found[0] <= 14_500, (kind, seed, found)


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_state_round_trips_through_json_mid_stream(kind: str) -> None:
    """A detector restored from its JSON state (as after a trainer restart) behaves like the original."""
    stream = errors(np.random.default_rng(7), [(15_000, 0.1), (5_000, 0.45)])
    original = DETECTORS[kind]()
    rises(original, stream[:14_976])
    restored = DETECTORS[kind]()
    restored.load(json.loads(json.dumps(original.to_json())))
    assert rises(restored, stream[14_976:]) == rises(original, stream[14_976:]) != []


def test_adwin_window_is_bounded_in_buckets_and_records() -> None:
    detector = drift.Adwin(max_records=50_000)
    stream = errors(np.random.default_rng(5), [(400_000, 0.2)])
    rises(detector, stream)
    assert detector.width <= 50_000
    # Exponential histogram: per_level buckets per level, log2(records / batch) levels.
    assert len(detector.buckets) <= detector.per_level * (int(np.log2(50_000 / BATCH)) + 2)
    assert abs((detector.mean or 0) - 0.2) < 0.01


def test_adwin_reports_the_error_rates_either_side_of_the_change() -> None:
    detector = drift.Adwin()
    stream = errors(np.random.default_rng(11), [(8_000, 0.05), (2_000, 0.5)])
    changes = []
    for start in range(0, stream.size, BATCH):
        change = detector.update(stream[start:start + BATCH])
        if change is not None:
            changes.append(change)
    assert len(changes) == 1
    change = changes[0]
    assert change.increase and abs(change.before - 0.05) < 0.02 and change.after > 0.35
    assert change.records_before > 5_000 and change.records_after >= 64


def test_make_builds_the_configured_detector() -> None:
    assert isinstance(drift.make("adwin"), drift.Adwin)
    assert isinstance(drift.make("page-hinkley"), drift.PageHinkley)
    assert drift.make("none") is None
    with pytest.raises(ValueError):
        drift.make("ddm")

"""Checkpoints (weights, optimizer, offsets together) and the exactly-once ledger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamtrain import models
from streamtrain.store import checkpoint
from streamtrain.store.checkpoint import TrainerState, check_ledger
from streamtrain.trainer.learner import Learner


def sample_state() -> TrainerState:
    state = TrainerState(records_trained=150, records_dead_lettered=2, batches=3, width=4, last_version=2,
                         preq_records=150, preq_correct=120, preq_loss_sum=55.5,
                         newest_record_ms=1_700_000_000_123, extra={"note": "x"})
    state.record_range("train", 0, 0, 100)
    state.record_range("train", 1, 7, 50)
    state.record_range("train", 1, 50, 59)
    return state


def arrays() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32),
               np.float32(7.0).reshape(())]
    optimizer = [np.int64(12).reshape(()), np.float32(0.001).reshape(()),
                 rng.normal(size=(4, 3)).astype(np.float32)]
    return weights, optimizer


def test_save_and_load_latest_roundtrip(tmp_path: Path) -> None:
    state = sample_state()
    weights, optimizer = arrays()
    path = checkpoint.save(tmp_path, state, weights, optimizer, keep=2)
    assert path == tmp_path / "ckpt-0000000001" and state.seq == 1
    restored = checkpoint.load_latest(tmp_path)
    assert restored is not None and restored.path == path
    assert restored.state == state  # every field, the ledger's int partition keys included
    assert restored.state.ledger == {"train": {0: [[0, 100]], 1: [[7, 59]]}}
    assert restored.state.offsets == {"train": {0: 100, 1: 59}}
    assert all(isinstance(p, int) for p in restored.state.ledger["train"])
    assert len(restored.weights) == 3 and len(restored.optimizer) == 3
    for got, want in zip(restored.weights + restored.optimizer, weights + optimizer, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    saved = json.loads((path / "state.json").read_text())
    assert saved["ledger"]["train"]["1"] == [[7, 59]]  # JSON keys are strings on disk


def test_roundtrip_of_a_real_learner(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    a = Learner(models.build("logreg", 4, seed=0), 0.05)
    for _ in range(3):
        a.step(x, y)
    checkpoint.save(tmp_path, TrainerState(), a.model.get_weights(), a.optimizer_state(), keep=1)
    restored = checkpoint.load_latest(tmp_path)
    assert restored is not None
    b = Learner(models.build("logreg", 4, seed=1), 0.05)
    b.restore(restored.weights, restored.optimizer)
    np.testing.assert_array_equal(b.step(x, y), a.step(x, y))
    np.testing.assert_allclose(b.step(x, y), a.step(x, y), rtol=1e-6)


def test_torn_newest_checkpoint_is_skipped(tmp_path: Path) -> None:
    weights, optimizer = arrays()
    state = sample_state()
    first = checkpoint.save(tmp_path, state, weights, optimizer, keep=3)
    state.record_range("train", 0, 100, 130)
    second = checkpoint.save(tmp_path, state, [w + 1 for w in weights], optimizer, keep=3)
    data = (second / "weights.npz").read_bytes()
    (second / "weights.npz").write_bytes(data[: len(data) // 2])  # killed mid-write, say
    restored = checkpoint.load_latest(tmp_path)
    assert restored is not None and restored.path == first
    assert restored.state.seq == 1 and restored.state.offsets["train"][0] == 100
    np.testing.assert_array_equal(restored.weights[0], weights[0])


@pytest.mark.parametrize("damage", ["state-not-json", "state-missing", "weights-missing", "weights-bitflip"])
def test_other_damage_is_skipped_too(tmp_path: Path, damage: str) -> None:
    weights, optimizer = arrays()
    state = sample_state()
    first = checkpoint.save(tmp_path, state, weights, optimizer, keep=3)
    second = checkpoint.save(tmp_path, state, weights, optimizer, keep=3)
    if damage == "state-not-json":
        (second / "state.json").write_text("{")
    elif damage == "state-missing":
        (second / "state.json").unlink()
    elif damage == "weights-missing":
        (second / "weights.npz").unlink()
    else:
        data = bytearray((second / "weights.npz").read_bytes())
        data[len(data) // 2] ^= 0x10
        (second / "weights.npz").write_bytes(bytes(data))
    restored = checkpoint.load_latest(tmp_path)
    assert restored is not None and restored.path == first


def test_no_usable_checkpoint(tmp_path: Path) -> None:
    assert checkpoint.load_latest(tmp_path) is None
    weights, optimizer = arrays()
    only = checkpoint.save(tmp_path, TrainerState(), weights, optimizer, keep=1)
    (only / "weights.npz").write_bytes(b"")
    assert checkpoint.load_latest(tmp_path) is None


def test_leftover_staging_dirs_are_cleaned(tmp_path: Path) -> None:
    weights, optimizer = arrays()
    good = checkpoint.save(tmp_path, TrainerState(), weights, optimizer, keep=2)
    leftovers = [tmp_path / ".tmp-ckpt-2-0badc0de", tmp_path / ".del-ckpt-0000000000-12345678"]
    for leftover in leftovers:
        leftover.mkdir()
        (leftover / "weights.npz").write_bytes(b"half")
    restored = checkpoint.load_latest(tmp_path)
    assert restored is not None and restored.path == good
    assert not any(p.exists() for p in leftovers)
    assert [p.name for p in tmp_path.iterdir()] == [good.name]


@pytest.mark.parametrize(("count", "keep"), [(5, 2), (12, 3), (1, 1)])
def test_keep_checkpoints_retention(tmp_path: Path, count: int, keep: int) -> None:
    weights, optimizer = arrays()
    state = TrainerState()
    for _ in range(count):
        checkpoint.save(tmp_path, state, weights, optimizer, keep=keep)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"ckpt-{seq:010d}" for seq in range(count - keep + 1, count + 1)]
    restored = checkpoint.load_latest(tmp_path)
    assert restored is not None and restored.state.seq == count
    assert checkpoint.read_latest_state(tmp_path)["seq"] == count  # type: ignore[index]


def test_record_range_merges_and_records_gaps_and_overlaps() -> None:
    state = TrainerState()
    state.record_range("t", 0, 0, 10)
    state.record_range("t", 0, 10, 25)  # contiguous: merged
    assert state.ledger == {"t": {0: [[0, 25]]}} and state.overlaps == []
    state.record_range("t", 0, 25, 25)  # empty: ignored
    state.record_range("t", 0, 30, 40)  # gap: a separate range
    assert state.ledger["t"][0] == [[0, 25], [30, 40]]
    assert state.offsets == {"t": {0: 40}}
    state.record_range("t", 0, 35, 45)  # overlap: noted
    assert state.overlaps == [{"topic": "t", "partition": 0, "start": 35, "end": 45}]
    state.record_range("t", 1, 5, 6)  # other partitions are independent
    state.record_range("u", 0, 0, 3)
    assert state.ledger["t"][1] == [[5, 6]] and state.ledger["u"][0] == [[0, 3]]
    assert state.offsets == {"t": {0: 45, 1: 6}, "u": {0: 3}}


def test_check_ledger_passes_on_a_perfect_ledger() -> None:
    state = TrainerState()
    for start in range(0, 100, 10):
        state.record_range("t", 0, start, start + 10)
    state.record_range("t", 1, 5, 50)
    produced = {"t": {0: 100, 1: 50, 2: 0}}
    starts = {"t": {1: 5}}
    assert check_ledger(state, produced, starts) == []
    # Also from the JSON form (string partition keys), as read from state.json.
    assert check_ledger(json.loads(json.dumps(state.to_json())), produced, starts) == []


def test_check_ledger_reports_gaps_overlaps_and_short_coverage() -> None:
    gap = TrainerState()
    gap.record_range("t", 0, 0, 10)
    gap.record_range("t", 0, 11, 20)
    problems = check_ledger(gap, {"t": {0: 20}})
    assert any("not one contiguous range" in p for p in problems)
    assert any("!= [[0, 20]]" in p for p in problems)

    overlap = TrainerState()
    overlap.record_range("t", 0, 0, 10)
    overlap.record_range("t", 0, 5, 15)
    assert any(p.startswith("overlap:") for p in check_ledger(overlap))

    short = TrainerState()
    short.record_range("t", 0, 0, 90)
    assert check_ledger(short) == []  # nothing to compare with
    assert check_ledger(short, {"t": {0: 100}}) == ["t[0]: ledger [[0, 90]] != [[0, 100]]"]

    missing = TrainerState()
    missing.record_range("t", 0, 0, 10)
    assert check_ledger(missing, {"t": {0: 10, 1: 4}}) == ["t[1]: ledger [] != [[0, 4]]"]
    assert check_ledger(missing, {"t": {0: 10}}, {"t": {0: 2}}) == ["t[0]: ledger [[0, 10]] != [[2, 10]]"]


def test_skipped_ranges_complete_the_ledger_and_may_not_overlap_trained_ones() -> None:
    state = TrainerState()
    state.record_range("t", 0, 0, 40)
    state.record_skip("t", 0, 40, 70)  # an operator left 30 records out
    state.record_range("t", 0, 70, 100)
    assert state.offsets == {"t": {0: 100}} and state.records_skipped == 30
    assert check_ledger(state, {"t": {0: 100}}) == []
    assert check_ledger(json.loads(json.dumps(state.to_json())), {"t": {0: 100}}) == []
    assert TrainerState.from_json(json.loads(json.dumps(state.to_json()))).skipped == {"t": {0: [[40, 70]]}}

    both = TrainerState()
    both.record_range("t", 0, 0, 50)
    both.record_skip("t", 0, 40, 60)
    assert any("both trained and skipped: [[40, 50]]" in p for p in check_ledger(both))


def test_retention_keeps_the_protected_checkpoints(tmp_path: Path) -> None:
    weights, optimizer = arrays()
    state = TrainerState()
    for _ in range(8):
        checkpoint.save(tmp_path, state, weights, optimizer, keep=2, protect={3, 5})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"ckpt-{seq:010d}" for seq in (3, 5, 7, 8)]
    assert checkpoint.load(checkpoint.path_of(tmp_path, 3)).state.seq == 3

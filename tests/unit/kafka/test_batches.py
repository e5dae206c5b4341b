"""Batch.ranges(): the offset runs that go into the checkpoint ledger."""

from __future__ import annotations

import numpy as np

from streamtrain.kafka.batches import Batch
from streamtrain.store.checkpoint import TrainerState, check_ledger
from streamtrain.wire import decode_batch


def batch(partitions: list[int], offsets: list[int]) -> Batch:
    n = len(offsets)
    keys: list[bytes | None] = [b"1"] * n
    values: list[bytes | None] = [b"1,2"] * n
    decoded, width = decode_batch(keys, values, None)
    return Batch(topic="t", partitions=np.array(partitions, np.int32), offsets=np.array(offsets, np.int64),
                 timestamps=np.zeros(n, np.int64), keys=keys, values=values, decoded=decoded, width=width,
                 fetched_at=0.0)


def test_ranges_are_runs_of_consecutive_offsets_per_partition() -> None:
    b = batch([0, 0, 0, 1, 1, 0, 1, 2], [5, 6, 7, 10, 11, 9, 13, 0])
    assert len(b) == 8
    assert b.ranges() == [(0, 5, 8), (0, 9, 10), (1, 10, 12), (1, 13, 14), (2, 0, 1)]


def test_ranges_single_run_and_interleaved_partitions() -> None:
    assert batch([3] * 4, [100, 101, 102, 103]).ranges() == [(3, 100, 104)]
    # Records of two partitions interleave as the consumer returns them; each partition is one run.
    assert batch([0, 1, 0, 1, 0], [0, 50, 1, 51, 2]).ranges() == [(0, 0, 3), (1, 50, 52)]


def test_ranges_with_gaps_of_compacted_or_skipped_offsets() -> None:
    assert batch([0] * 5, [1, 2, 4, 7, 8]).ranges() == [(0, 1, 3), (0, 4, 5), (0, 7, 9)]


def test_empty_batch_has_no_ranges() -> None:
    assert batch([], []).ranges() == []


def test_ranges_of_consecutive_batches_make_a_perfect_ledger() -> None:
    state = TrainerState()
    offsets = {0: 0, 1: 0}
    rng = np.random.default_rng(0)
    for _ in range(20):
        parts, offs = [], []
        for _ in range(int(rng.integers(1, 30))):
            p = int(rng.integers(0, 2))
            parts.append(p)
            offs.append(offsets[p])
            offsets[p] += 1
        for partition, start, end in batch(parts, offs).ranges():
            state.record_range("t", partition, start, end)
    assert check_ledger(state, {"t": offsets}) == []
    assert state.offsets == {"t": offsets}

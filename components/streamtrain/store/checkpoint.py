"""Trainer checkpoints: weights, optimizer state and consumed offsets, written together atomically.

    <checkpoint-dir>/ckpt-<seq>/weights.npz   model weights, then optimizer variables
                               state.json    offsets, the ledger, counters (written last, with a checksum)

The ledger lists, per partition, the half-open offset ranges whose records are inside the saved
model (trained, or dead-lettered as unusable); `skipped` the ranges an operator left out. Resuming from
a checkpoint resumes the model and the offsets together, so each record is in the model exactly once
or skipped; `check_ledger` proves it. A rewind (trainer/operations.py) starts a new lineage from an
older checkpoint: the ledger is then that checkpoint's, and `lineage` says where each one started.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Container
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamtrain.store import atomic

log = logging.getLogger(__name__)

STATE = "state.json"
WEIGHTS = "weights.npz"


@dataclass
class TrainerState:
    seq: int = 0
    records_trained: int = 0
    records_dead_lettered: int = 0
    batches: int = 0
    width: int | None = None
    last_version: int = 0
    # {topic: {partition: next offset}}; JSON turns partition keys into strings, load() turns them back.
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    ledger: dict[str, dict[int, list[list[int]]]] = field(default_factory=dict)
    overlaps: list[dict[str, int | str]] = field(default_factory=list)
    # Prequential (test-then-train) totals since the first record.
    preq_records: int = 0
    preq_correct: int = 0
    preq_loss_sum: float = 0.0
    newest_record_ms: int = 0  # produce timestamp of the newest record in the model
    offset_resets: list[dict[str, Any]] = field(default_factory=list)
    # Operator actions (trainer/operations.py): ranges left out, the lineages a rewind started, actions applied.
    skipped: dict[str, dict[int, list[list[int]]]] = field(default_factory=dict)
    records_skipped: int = 0
    lineage: list[dict[str, Any]] = field(default_factory=list)
    applied_actions: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def record_range(self, topic: str, partition: int, start: int, end: int) -> None:
        """Note that offsets [start, end) of a partition are now in the model."""
        if end <= start:
            return
        ranges = self.ledger.setdefault(topic, {}).setdefault(partition, [])
        if ranges and start < ranges[-1][1]:
            self.overlaps.append({"topic": topic, "partition": partition, "start": start, "end": end})
            log.error("offsets consumed twice", extra={"topic": topic, "partition": partition,
                                                       "start": start, "end": end})
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = end
        else:
            ranges.append([start, end])
        self.offsets.setdefault(topic, {})[partition] = end

    def record_skip(self, topic: str, partition: int, start: int, end: int) -> None:
        """Note that an operator left offsets [start, end) of a partition out: neither trained nor dead-lettered."""
        if end <= start:
            return
        self.skipped.setdefault(topic, {}).setdefault(partition, []).append([start, end])
        self.records_skipped += end - start
        self.offsets.setdefault(topic, {})[partition] = end

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerState:
        state = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        state.offsets = {t: {int(p): int(o) for p, o in parts.items()} for t, parts in state.offsets.items()}
        state.ledger = {t: {int(p): r for p, r in parts.items()} for t, parts in state.ledger.items()}
        state.skipped = {t: {int(p): r for p, r in parts.items()} for t, parts in state.skipped.items()}
        return state


def _merged(ranges: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """(the union of half-open ranges as sorted disjoint ranges, the overlapping pairs)."""
    merged: list[list[int]] = []
    overlaps = []
    for start, end in sorted(ranges):
        if merged and start < merged[-1][1]:
            overlaps.append([start, min(end, merged[-1][1])])
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged, overlaps


def check_ledger(state: dict[str, Any] | TrainerState, produced: dict[str, dict[int, int]] | None = None,
                 starts: dict[str, dict[int, int]] | None = None) -> list[str]:
    """Problems with the exactly-once ledger (empty list = every offset is in the model once).

    produced: {topic: {partition: high watermark}} that the ledger must cover completely;
    starts: first offsets (default 0).
    """
    if isinstance(state, TrainerState):
        state = state.to_json()
    problems = [f"overlap: {o}" for o in state.get("overlaps", [])]
    ledger: dict[str, dict[int, list[list[int]]]] = {}
    for key in ("ledger", "skipped"):  # trained or dead-lettered, or left out by an operator: each offset once
        for topic, parts in state.get(key, {}).items():
            for partition, ranges in parts.items():
                ledger.setdefault(topic, {}).setdefault(int(partition), []).extend(ranges)
    for topic, parts in ledger.items():
        for partition, ranges in list(parts.items()):
            merged, overlaps = _merged(ranges)
            if overlaps:
                problems.append(f"{topic}[{partition}]: offsets both trained and skipped: {overlaps[:5]}")
            if len(merged) != 1:
                problems.append(f"{topic}[{partition}]: offsets are not one contiguous range: {merged[:5]}")
            parts[partition] = merged
    if produced is not None:
        for topic, parts in produced.items():
            for partition, high in parts.items():
                start = (starts or {}).get(topic, {}).get(partition, 0)
                if high <= start:
                    continue
                ranges = ledger.get(topic, {}).get(partition, [])
                if ranges != [[start, high]]:
                    problems.append(f"{topic}[{partition}]: ledger {ranges[:5]} != [[{start}, {high}]]")
    return problems


def save(directory: Path, state: TrainerState, weights: list[np.ndarray], optimizer: list[np.ndarray],
         keep: int, protect: Container[int] = ()) -> Path:
    """Write checkpoint state.seq + 1 atomically, then drop all but the newest `keep`, except the sequence numbers
    in `protect` (the checkpoints of the versions in the model store, which a rewind goes back to)."""
    state.seq += 1
    staged = atomic.staging_dir(directory, f"ckpt-{state.seq}")
    try:
        arrays = {f"w{i}": w for i, w in enumerate(weights)} | {f"o{i}": o for i, o in enumerate(optimizer)}
        np.savez(staged / WEIGHTS, **arrays)  # type: ignore[arg-type]
        payload = {**state.to_json(), "n_weights": len(weights), "n_optimizer": len(optimizer),
                   "weights_sha256": atomic.sha256_file(staged / WEIGHTS)}
        (staged / STATE).write_text(json.dumps(payload, indent=1))
        final = path_of(directory, state.seq)
        atomic.commit_dir(staged, final)
    except BaseException:
        state.seq -= 1
        atomic.remove_dir(staged)
        raise
    for old in sorted(directory.glob("ckpt-*"))[:-keep]:
        if _seq_of(old) not in protect:
            atomic.remove_dir(old)
    return final


def _seq_of(path: Path) -> int:
    try:
        return int(path.name.removeprefix("ckpt-"))
    except ValueError:
        return -1


def path_of(directory: Path, seq: int) -> Path:
    return directory / f"ckpt-{seq:010d}"


@dataclass
class Restored:
    state: TrainerState
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    path: Path


def load_latest(directory: Path) -> Restored | None:
    """The newest checkpoint that verifies; a torn one (killed mid-write) is passed over."""
    atomic.clean_staging(directory)
    for path in sorted(directory.glob("ckpt-*"), reverse=True):
        try:
            return load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("skipping unusable checkpoint", extra={"path": str(path), "reason": str(exc)})
    return None


def load(path: Path) -> Restored:
    """One checkpoint, verified; raises OSError (missing), ValueError or KeyError (torn or corrupt)."""
    payload = json.loads((path / STATE).read_text())
    if atomic.sha256_file(path / WEIGHTS) != payload["weights_sha256"]:
        raise ValueError("weights checksum mismatch")
    with np.load(path / WEIGHTS) as arrays:
        weights = [arrays[f"w{i}"] for i in range(payload["n_weights"])]
        optimizer = [arrays[f"o{i}"] for i in range(payload["n_optimizer"])]
    return Restored(TrainerState.from_json(payload), weights, optimizer, path)


def read_latest_state(directory: Path) -> dict[str, Any] | None:
    """state.json of the newest checkpoint, for inspection (no weights loaded)."""
    for path in sorted(directory.glob("ckpt-*"), reverse=True):
        try:
            data: dict[str, Any] = json.loads((path / STATE).read_text())
            return data
        except (OSError, ValueError):
            continue
    return None

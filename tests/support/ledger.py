"""Exactly-once assertions shared by the process, container and cluster-level tests."""

from __future__ import annotations

from typing import Any

from streamtrain.store.checkpoint import check_ledger


def check_exactly_once(state: dict[str, Any], produced: dict[str, dict[int, int]] | None = None) -> None:
    """Fail unless the checkpoint ledger covers every produced offset exactly once (trained, dead-lettered, or
    skipped by an operator).

    state: a checkpoint's state.json (or the trainer's summary, which carries the same ledger);
    produced: {topic: {partition: high watermark}} of what the broker holds.
    """
    problems = check_ledger(state, produced)
    assert not problems, "exactly-once ledger broken:\n  " + "\n  ".join(problems)
    if produced is not None:
        total = sum(sum(parts.values()) for parts in produced.values())
        skipped = state.get("records_skipped", 0)
        consumed = state["records_trained"] + state["records_dead_lettered"] + skipped
        assert consumed == total, f"trained {state['records_trained']} + dead-lettered " \
                                  f"{state['records_dead_lettered']} + skipped {skipped} != produced {total}"

"""Operator actions on the trainer: pure decisions over plain data (the trainer applies them, trainer/main.py).

- **rewind** to version N: the state of the checkpoint that produced N becomes the trainer's, which then trains
  again from that checkpoint's offsets. It starts a new *lineage*: the ledger is N's (the records after it are no
  longer in the model and will be trained again), while the numbering of versions and checkpoints, the actions
  applied and the topic's identity carry on.
- **skip** to offsets (or a time, turned into offsets by the broker): the records from where the trainer stands to
  those offsets are left out: neither trained nor dead-lettered, recorded as skipped.

>>> skip_plan({0: 100, 1: 40}, {0: 150, 1: 40}, {0: (0, 200), 1: (0, 90)})
{0: (100, 150)}
>>> skip_plan({0: 100}, {0: 60}, {0: (0, 200)})
Traceback (most recent call last):
...
streamtrain.trainer.operations.ActionRejected: partition 0 is at offset 100, past 60: rewind first ...
>>> now = TrainerState(seq=9, last_version=7, records_trained=900, applied_actions=["a1"])
>>> back = rewound(now, TrainerState(seq=4, last_version=3, records_trained=400), 3, "a2", "ops")
>>> back.seq, back.last_version, back.records_trained, back.lineage[0]["to_version"], back.applied_actions
(9, 7, 400, 3, ['a1'])
"""

from __future__ import annotations

import copy
import time
from typing import Any

from streamtrain.store.checkpoint import TrainerState
from streamtrain.trainer.assignment import Watermarks


class ActionRejected(ValueError):
    """An action that cannot be applied as asked; nothing of it is applied, and the message (sent back to the operator
    on the model-events topic) says why. `refusal` (sent with it) tells the kind apart for the command's exit code."""

    refusal = "refused"


class UnknownVersion(ActionRejected):
    """A rewind to a version that is not in the model store, or to a time no version in it was trained before."""

    refusal = "unknown-version"


def skip_plan(current: dict[int, int], targets: dict[int, int], marks: Watermarks) -> dict[int, tuple[int, int]]:
    """Per partition, the half-open range [start, end) to leave out: from the trainer's next offset (the partition's
    first when it has none) to the target. A target before the next offset (trained already), past the partition's
    end or on an unknown partition rejects the whole action."""
    plan = {}
    for partition, target in sorted(targets.items()):
        if partition not in marks:
            raise ActionRejected(f"the train topic has no partition {partition} (it has {sorted(marks)})")
        low, high = marks[partition]
        start = current.get(partition, low)
        if target > high:
            raise ActionRejected(f"partition {partition} ends at offset {high}; cannot skip to {target}")
        if target < start:
            raise ActionRejected(f"partition {partition} is at offset {start}, past {target}: rewind first to train "
                                 "those records again")
        if target > start:
            plan[partition] = (start, target)
    if not plan:
        raise ActionRejected(f"nothing to skip: the trainer is at {dict(sorted(current.items()))} already")
    return plan


def rewound(current: TrainerState, target: TrainerState, version: int, action_id: str, by: str) -> TrainerState:
    """`target` (the checkpoint of `version`) as the trainer's state, continuing `current`'s history: checkpoint and
    version numbers only grow, actions stay applied, the topic ids stay known; a lineage entry says where it began."""
    state = copy.deepcopy(target)
    state.seq, state.last_version = current.seq, current.last_version
    state.applied_actions = list(current.applied_actions)
    state.extra["topic_ids"] = dict(current.extra.get("topic_ids", {}))
    entry: dict[str, Any] = {
        "lineage": len(current.lineage) + 1, "to_version": version, "from_version": current.last_version,
        "offsets": copy.deepcopy(target.offsets), "records_trained_before": current.records_trained,
        "action": action_id, "by": by, "ts_ms": int(time.time() * 1000),
    }
    state.lineage = [*current.lineage, entry]
    return state

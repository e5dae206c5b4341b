"""Where the trainer starts reading each partition of its train topic: pure decisions over plain data.

The trainer assigns partitions itself (no consumer group): a partition starts at its checkpointed offset, or, never
checkpointed, at the earliest or latest offset (`--start-offset`). A checkpointed offset the broker no longer has is
*lost*: the topic was re-created (another topic id), the partition is gone, the offset fell below the log start
(retention), or it lies past the reported end and the record just before it cannot be fetched (the broker lost its
data; some brokers' watermarks lag, so past-the-end alone proves nothing). What then happens is `--on-offset-loss`'s.

>>> marks = {0: (0, 100), 1: (50, 80)}
>>> [lost.partition for lost in lost_offsets({0: 40, 1: 10}, marks, fetchable=set())]
[1]
>>> lost_offsets({0: 40}, marks, fetchable=set(), saved_id="a", topic_id="b")[0].why
'the topic was re-created (id a, now b)'
>>> start_offsets(marks, {0: 40}, "earliest")
{0: 40, 1: -2}
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

Watermarks = dict[int, tuple[int, int]]  # partition -> (low, high)


@dataclass(frozen=True)
class LostOffset:
    partition: int
    offset: int
    low: int  # the partition's watermarks now; -1 when the partition is gone
    high: int
    why: str


def past_the_end(saved: dict[int, int], marks: Watermarks) -> dict[int, int]:
    """Per partition whose checkpointed offset lies past the reported end: the offset of the record just before it,
    which must still be fetchable for the offset to count as there."""
    return {p: o - 1 for p, o in saved.items() if p in marks and o > marks[p][1]}


def lost_offsets(saved: dict[int, int], marks: Watermarks, fetchable: set[int], saved_id: str | None = None,
                 topic_id: str | None = None) -> list[LostOffset]:
    """The checkpointed offsets that are not on the broker. fetchable: the partitions of past_the_end() whose record
    could be fetched; saved_id/topic_id: the topic's id when checkpointed and now (None: unknown)."""
    recreated = (f"the topic was re-created (id {saved_id}, now {topic_id})"
                 if saved and saved_id and topic_id and saved_id != topic_id else None)
    lost = []
    for partition, offset in saved.items():
        low, high = marks.get(partition, (-1, -1))
        beyond = offset > high  # past_the_end's test: the record before it must be fetchable
        gone = partition not in marks or offset < low or (beyond and partition not in fetchable)
        if gone or recreated:
            why = recreated or f"it has {low}..{high}; was the topic deleted or the broker's data lost?"
            lost.append(LostOffset(partition, offset, low, high, why))
    return lost


def start_offsets(marks: Watermarks, saved: dict[int, int], start_offset: str) -> dict[int, int]:
    """The offset to assign each partition at: the checkpointed one, else the earliest or the latest."""
    fresh = OFFSET_BEGINNING if start_offset == "earliest" else OFFSET_END
    return {partition: saved.get(partition, fresh) for partition in marks}

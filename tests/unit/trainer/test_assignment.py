"""The trainer's offset-loss decisions, over plain data (no broker)."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from streamtrain.trainer.assignment import lost_offsets, past_the_end, start_offsets

MARKS = {0: (0, 100), 1: (50, 80), 2: (0, 10)}


def lost(saved: dict[int, int], fetchable: set[int] | None = None, **ids: str) -> dict[int, str]:
    return {x.partition: x.why for x in lost_offsets(saved, MARKS, fetchable or set(), **ids)}


def test_offsets_within_the_watermarks_are_there() -> None:
    assert lost({0: 0, 1: 50, 2: 10}) == {}  # the end itself is where the next record goes


def test_an_offset_below_the_log_start_is_lost() -> None:
    assert list(lost({1: 49})) == [1]
    assert "it has 50..80" in lost({1: 49})[1]


def test_a_partition_the_topic_no_longer_has_is_lost() -> None:
    assert lost({7: 3}) == {7: "it has -1..-1; was the topic deleted or the broker's data lost?"}


def test_past_the_reported_end_counts_only_when_the_record_before_it_is_fetchable() -> None:
    saved = {0: 120, 2: 5}
    assert past_the_end(saved, MARKS) == {0: 119}
    assert list(lost(saved)) == [0]
    assert lost(saved, fetchable={0}) == {}  # a lagging watermark: the data is there


def test_a_recreated_topic_loses_every_offset() -> None:
    saved = {0: 10, 1: 60}
    assert sorted(lost(saved, saved_id="old", topic_id="new")) == [0, 1]
    assert lost(saved, saved_id="same", topic_id="same") == {}
    assert lost(saved, saved_id="old", topic_id="") == {}  # an unknown id proves nothing


def test_start_offsets_take_the_checkpoint_else_the_configured_end() -> None:
    assert start_offsets(MARKS, {0: 40}, "earliest") == {0: 40, 1: OFFSET_BEGINNING, 2: OFFSET_BEGINNING}
    assert start_offsets(MARKS, {}, "latest") == {0: OFFSET_END, 1: OFFSET_END, 2: OFFSET_END}
    assert start_offsets(MARKS, {9: 5}, "earliest") == dict.fromkeys(MARKS, OFFSET_BEGINNING)

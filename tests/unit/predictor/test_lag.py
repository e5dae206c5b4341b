"""The predictor's consumer lag (its /status `lag`): from the consumer's cached high watermarks, no broker."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from streamtrain.predictor.main import input_lag


class Consumer:
    def __init__(self, assigned: list[TopicPartition], highs: dict[int, int]) -> None:
        self.assigned, self.highs = assigned, highs
        self.cached: list[bool] = []

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        self.cached.append(cached)
        return 0, self.highs.get(tp.partition, -1001)


def test_lag_is_the_records_beyond_what_was_scored_on_the_assigned_partitions() -> None:
    consumer = Consumer([TopicPartition("in", 0), TopicPartition("in", 1), TopicPartition("in", 2)],
                        {0: 120, 1: 50, 2: 900})
    # partition 2 is assigned but nothing of it was scored yet: not counted; 3 was scored but is no longer assigned
    assert input_lag(consumer, "in", {0: 100, 1: 50, 3: 7}) == 20
    assert consumer.cached == [True, True]  # the last fetch responses: no request to the broker


def test_lag_is_unknown_before_anything_was_scored_or_fetched() -> None:
    assert input_lag(None, "in", {0: 5}) is None
    assert input_lag(Consumer([TopicPartition("in", 0)], {}), "in", {0: 5}) is None  # no fetch response yet
    assert input_lag(Consumer([TopicPartition("in", 0)], {0: 9}), "in", {}) is None
    assert input_lag(Consumer([TopicPartition("other", 0)], {0: 9}), "in", {0: 1}) is None

"""--batch-size auto (the default): the trainer takes the smallest optimizer steps that keep up with its stream and
clear a backlog within --catch-up-seconds. Given a short time to catch up on a pre-filled topic, it grows its steps
to the largest; given plenty, it keeps the smallest and spends the time to spare on extra steps on recent records
(rehearsal); once it keeps up with a trickle of records, the smallest, and rehearsal in the time the stream
leaves. With --learning-rate auto, each step's learning rate grows with the square root of its size.

The trainer runs as a process on the embedded broker; its --trace-file has one line per optimizer step, with the
records it took and the learning rate. The catch-up times are chosen far from what any machine trains: one asks for
millions of records a second, the other for a few.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from streamtrain.service.config import LEARNING_RATES
from streamtrain.wire import encode_labels, encode_rows
from tests.faults.helpers import client_conf
from tests.support.processes import Component

pytestmark = pytest.mark.integration

PREFILLED = 150_000
TRICKLE = 40
MIN, MAX = 16, 256  # (steps of 256 grow no more: then growth takes 4 doublings, well within the topic)
BASE = LEARNING_RATES["mlp"]  # --learning-rate auto for steps of 16


def produce(env: dict[str, str], rng: np.random.Generator, n: int, pause: float = 0.0) -> None:
    x = rng.normal(0, 1, (n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    producer = Producer(client_conf(env))
    for i, (key, value) in enumerate(zip(encode_labels(y), encode_rows(x), strict=True)):
        producer.produce(env["STREAMTRAIN_TRAIN_TOPIC"], key=key, value=value, partition=i % 2)
        if i % 50_000 == 49_999:
            producer.flush(60)  # the client queues 100,000 at most
        if pause:
            producer.flush(10)
            time.sleep(pause)
    assert producer.flush(60) == 0


def steps(trace: Path) -> list[tuple[int, int, float]]:
    """(records trained after the step, records in the step, its learning rate), step by step."""
    with trace.open() as handle:
        return [(int(row["records_trained"]), int(row["records"]), float(row["learning_rate"]))
                for row in csv.DictReader(handle)]


def trainer(topics: dict[str, str], tmp_path: Path, catch_up_seconds: float) -> Component:
    return Component("trainer", topics, tmp_path / "logs", model_dir=tmp_path / "models",
                     checkpoint_dir=tmp_path / "ckpt", trace_file=tmp_path / "trace.csv", min_batch_size=MIN,
                     max_batch_size=MAX, catch_up_seconds=catch_up_seconds)


def test_behind_it_grows_its_steps_then_keeping_up_takes_the_smallest(topics: dict[str, str],
                                                                       tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    produce(topics, rng, PREFILLED)
    # 150,000 records to clear in 10 ms: more than any step size trains, so the steps grow to the largest.
    process = trainer(topics, tmp_path, catch_up_seconds=0.01)
    try:
        process.start()
        process.wait_for(lambda s: s["records_trained"] == PREFILLED, 300, "the pre-filled topic trained")
        produce(topics, rng, TRICKLE, pause=0.05)  # about 20 records a second: nothing to catch up
        status = process.wait_for(lambda s: s["records_trained"] == PREFILLED + TRICKLE, 120, "the trickle trained")
        _, metrics = process.get("/metrics")
    finally:
        process.stop()

    taken = steps(tmp_path / "trace.csv")
    assert sum(n for _, n, _ in taken) == PREFILLED + TRICKLE, "the trace misses steps"
    behind = [n for end, n, _ in taken if end <= PREFILLED]
    assert max(behind[:10]) <= MIN, behind[:10]  # it starts small, and grows only once it has measured itself
    assert max(behind) == MAX, sorted(set(behind))
    grown = behind.index(MAX)
    assert {16, 32, 64, 128} <= set(behind[:grown]), sorted(set(behind[:grown]))  # by doublings
    # --learning-rate auto: the step's rate times the square root of its growth over 16 records.
    assert {round(lr / BASE, 6) for _, n, lr in taken if n == MAX} == {4.0}
    assert {round(lr / BASE, 6) for _, n, lr in taken if n == MIN} == {1.0}
    kept_up = [n for end, n, _ in taken if end > PREFILLED]
    assert kept_up and max(kept_up) <= MIN, kept_up
    assert status["batch_size"] == MIN, status
    # Keeping up, with time to spare: extra steps on recent records (--rehearsal-steps, up to 7 a step by default).
    assert status["rehearsal_steps"] > 0, status
    assert "streamtrain_trainer_rehearsal_steps_total" in metrics
    assert f"streamtrain_trainer_batch_size {float(status['batch_size'])}" in metrics, metrics[-2000:]


def test_a_backlog_it_can_clear_in_time_keeps_the_smallest_steps_and_rehearses(topics: dict[str, str],
                                                                                 tmp_path: Path) -> None:
    produce(topics, np.random.default_rng(6), 10_000)
    # 10,000 records to clear in an hour: 3 records a second, which steps of 16 train on any machine, with time
    # to spare for the largest number of extra steps on recent records.
    process = trainer(topics, tmp_path, catch_up_seconds=3600)
    try:
        process.start()
        status = process.wait_for(lambda s: s["records_trained"] == 10_000, 300, "the pre-filled topic trained")
    finally:
        process.stop()
    taken = steps(tmp_path / "trace.csv")
    assert sum(n for _, n, _ in taken) == 10_000, "the trace misses steps"
    assert max(n for _, n, _ in taken) <= MIN, sorted({n for _, n, _ in taken})
    # Up to 7 a step (--rehearsal-steps), all while batches were waiting (the topic was full): most of 625 steps'.
    assert status["rehearsal_steps"] > 3 * len(taken), (status["rehearsal_steps"], len(taken))

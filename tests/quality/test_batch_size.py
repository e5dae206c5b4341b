"""--batch-size auto (the default): the trainer's optimizer steps follow its backlog. Behind a pre-filled topic it
takes the largest steps and smaller ones as it catches up; once it keeps up with a trickle of records, the smallest,
and extra steps on recent records in the time the stream leaves (rehearsal).

The trainer runs as a process on the embedded broker; its --trace-file has one line per optimizer step, with the
records it took. Step sizes depend on the backlog (the records on the broker beyond the batch in hand), which here
is a matter of position in the topic, not of how fast the machine is.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from streamtrain.kafka.batches import FIRST_RECORDS
from streamtrain.trainer.pace import STEPS_BEHIND
from streamtrain.wire import encode_labels, encode_rows
from tests.faults.helpers import client_conf
from tests.support.processes import Component

pytestmark = pytest.mark.integration

PREFILLED = 50_000
TRICKLE = 40
MIN, MAX = 16, 1024


def produce(env: dict[str, str], rng: np.random.Generator, n: int, pause: float = 0.0) -> None:
    x = rng.normal(0, 1, (n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    producer = Producer(client_conf(env))
    for i, (key, value) in enumerate(zip(encode_labels(y), encode_rows(x), strict=True)):
        producer.produce(env["STREAMTRAIN_TRAIN_TOPIC"], key=key, value=value, partition=i % 2)
        if pause:
            producer.flush(10)
            time.sleep(pause)
    assert producer.flush(60) == 0


def steps(trace: Path) -> list[tuple[int, int]]:
    """(records trained after the step, records in the step), step by step."""
    with trace.open() as handle:
        return [(int(row["records_trained"]), int(row["records"])) for row in csv.DictReader(handle)]


def test_steps_follow_the_backlog(topics: dict[str, str], tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    produce(topics, rng, PREFILLED)
    trace = tmp_path / "trace.csv"
    trainer = Component("trainer", topics, tmp_path / "logs", model="logreg", model_dir=tmp_path / "models",
                        checkpoint_dir=tmp_path / "ckpt", trace_file=trace, min_batch_size=MIN, max_batch_size=MAX)
    try:
        trainer.start()
        trainer.wait_for(lambda s: s["records_trained"] == PREFILLED, 300, "the pre-filled topic trained")
        produce(topics, rng, TRICKLE, pause=0.05)  # about 20 records a second: nothing to catch up
        status = trainer.wait_for(lambda s: s["records_trained"] == PREFILLED + TRICKLE, 120, "the trickle trained")
        _, metrics = trainer.get("/metrics")
    finally:
        trainer.stop()

    taken = steps(trace)
    assert sum(n for _, n in taken) == PREFILLED + TRICKLE, "the trace misses steps"
    far = PREFILLED - STEPS_BEHIND * MAX - MAX  # beyond every batch that ends before here: > STEPS_BEHIND * MAX
    # The first batch is small (the reader learns the records' shape from it); until a fetch from each partition
    # has told its end, the backlog counts the partitions known (the first batches may be in smaller steps).
    start = FIRST_RECORDS + 2 * MAX
    behind = [n for end, n in taken if start < end <= far]
    assert len(behind) > 10 and behind == [MAX] * len(behind), behind
    catching_up = [n for end, n in taken if end > PREFILLED - STEPS_BEHIND * MAX // 2 and end <= PREFILLED]
    assert max(catching_up) < MAX and min(catching_up) <= MIN, catching_up  # smaller as the backlog shrinks
    kept_up = [n for end, n in taken if end > PREFILLED]
    assert kept_up and max(kept_up) <= MIN, kept_up
    assert status["batch_size"] is not None and status["batch_size"] <= MIN, status
    # Keeping up, with time to spare: extra steps on recent records (--rehearsal-steps, up to 7 a step by default).
    assert status["rehearsal_steps"] > 0, status
    assert "streamtrain_trainer_rehearsal_steps_total" in metrics
    assert f"streamtrain_trainer_batch_size {float(status['batch_size'])}" in metrics, metrics[-2000:]

"""The trainer and the evaluator run in this process on the service loop, with the Kafka clients they are handed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from streamtrain.evaluator.main import Evaluator
from streamtrain.kafka import clients
from streamtrain.service import loop
from streamtrain.service.config import CommonSettings, EvaluatorSettings, TrainerSettings
from streamtrain.service.runtime import StopFlag
from streamtrain.trainer.main import Trainer
from streamtrain.wire import encode_labels, encode_rows
from tests.support.kafka import headers, read_all

pytestmark = pytest.mark.integration

TRAIN, TEST, BAD = 2000, 500, [(b"1", b"1.0,2.0"), (b"7", b"1,2,3,4,5"), (None, b"1,2,3,4,5")]


def fields(env: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("STREAMTRAIN_").lower(): v for k, v in env.items()}


def test_trainer_and_evaluator_run_in_process_with_the_clients_they_are_given(topics: dict[str, str],
                                                                              tmp_path: Path) -> None:
    bootstrap = topics["STREAMTRAIN_BOOTSTRAP_SERVERS"]
    rng = np.random.default_rng(11)
    x = rng.normal(size=(TRAIN + TEST, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    records = list(zip(encode_labels(y), encode_rows(x), strict=True))
    source = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, (key, value) in enumerate(records[:TRAIN] + BAD):
        source.produce(topics["STREAMTRAIN_TRAIN_TOPIC"], key=key, value=value, partition=i % 2)
    for i, (key, value) in enumerate(records[TRAIN:]):
        source.produce(topics["STREAMTRAIN_TEST_TOPIC"], key=key, value=value, partition=i % 2)
    assert source.flush(30) == 0

    given = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "client.id": "given-by-test"})
    asked: list[str] = []

    def consumer(settings: CommonSettings, component: str, group_id: str | None = None, **config: Any) -> Consumer:
        asked.append(component)
        return clients.consumer(settings, component, group_id, **config)

    store = {"model_dir": tmp_path / "models", "http_port": 0}
    training = TrainerSettings(**fields(topics), **store, checkpoint_dir=tmp_path / "ckpt", batch_size=100,
                               publish_every_batches=5, max_records=TRAIN + len(BAD))
    stop = StopFlag()
    trainer = Trainer(training, stop, producer=given, consumer=consumer)
    trained = loop.run(trainer, training, stop)
    assert trainer.kafka is given and asked == ["trainer"]
    assert (trained["records_trained"], trained["records_dead_lettered"]) == (TRAIN, len(BAD))
    assert trained["stopped_by"] == "max records" and trained["last_version"] >= 1
    dead = read_all(bootstrap, topics["STREAMTRAIN_DEAD_LETTER_TOPIC"])
    assert sorted(headers(m)["streamtrain.reason"].split(":")[0] for m in dead) == [
        "invalid-label", "missing-label", "wrong-column-count"]

    evaluating = EvaluatorSettings(**fields(topics), **store, report_dir=tmp_path / "reports", max_records=TEST)
    evaluator = Evaluator(evaluating, stop, producer=given, consumer=consumer)
    evaluated = loop.run(evaluator, evaluating, stop)
    assert asked == ["trainer", "evaluator"]
    assert evaluated["records_evaluated"] == TEST and evaluated["stopped_by"] == "max records"
    assert evaluated["model_version"] == trained["last_version"]
    assert (tmp_path / "reports" / "accuracy.csv").exists()

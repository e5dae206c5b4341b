"""Versions over Kafka: the model-files topic mirrors the trainer's store into another directory, as on another
node; a version appears there whole and verified, leaves when retention removes it, and a damaged one is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamtrain.service.config import EvaluatorSettings
from streamtrain.store import model_store, shipping
from tests.support.processes import Component
from tests.support.serving import breast_cancer, produce_inputs, publish_trained, read_predictions

pytestmark = pytest.mark.integration


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_topic_mirrors_the_store_into_another_directory(topics: dict[str, str], tmp_path: Path) -> None:
    x, y = breast_cancer()
    trainer_store, node_store = tmp_path / "volume", tmp_path / "other-node"
    settings = EvaluatorSettings(**{k.removeprefix("STREAMTRAIN_").lower(): v for k, v in topics.items()},
                                 model_dir=node_store, model_source="kafka")
    topic = settings.model_files_topic
    kafka = Producer({"bootstrap.servers": settings.bootstrap_servers})
    model = publish_trained(trainer_store, 1, x[:100], y[:100])
    shipping.ship(kafka, topic, "streamtrain", model)
    kafka.flush(30)
    receiver = shipping.receive(settings, "tests")
    assert receiver is not None
    try:
        wait_until(lambda: model_store.version_numbers(node_store, "streamtrain") == [1], 60, "version 1 received")
        keras_model = model_store.load(model.path)[0]
        for number in (2, 3, 4):  # the trainer publishes with retention 2: versions 1 and 2 go
            published = model_store.publish(trainer_store, "streamtrain", keras_model, number,
                                            {}, keep=2, savedmodel=number == 4)
            shipping.ship(kafka, topic, "streamtrain", published)
            for removed, manifest in published.removed:
                shipping.unship(kafka, topic, "streamtrain", removed, manifest)
        # a damaged version: one chunk's bytes flipped on the way
        damaged = model_store.publish(tmp_path / "elsewhere", "streamtrain", keras_model, 9, {},
                                      keep=5, savedmodel=False)
        keras_file = damaged.path / model_store.KERAS_FILE
        keras_file.write_bytes(b"\x00" + keras_file.read_bytes()[1:])
        shipping.ship(kafka, topic, "streamtrain", damaged)
        kafka.flush(30)
        wait_until(lambda: 9 in receiver.refused, 60, "the damaged version refused")
        assert model_store.version_numbers(node_store, "streamtrain") == \
            model_store.version_numbers(trainer_store, "streamtrain") == [3, 4]
        for number in (3, 4):
            assert model_store.verify(node_store / "streamtrain" / str(number)) == \
                model_store.read_manifest(trainer_store / "streamtrain" / str(number))
        assert "checksum mismatch in model.keras" in receiver.refused[9]
    finally:
        receiver.stop()


def test_a_predictor_elsewhere_serves_what_the_trainer_ships(topics: dict[str, str], tmp_path: Path) -> None:
    """Trainer and predictor share no directory: versions reach the predictor over the model-files topic only."""
    logs = tmp_path / "logs"
    trainer = Component("trainer", topics, logs, model_dir=tmp_path / "volume", checkpoint_dir=tmp_path / "ckpt",
                        ship_versions=True, batch_size=64, publish_every_seconds=1, keep_versions=2,
                        summary_file=tmp_path / "trainer.json").start()
    predictor = Component("predictor", topics, logs, model_dir=tmp_path / "other-node", model_source="kafka",
                          serve="newest", group_id="shipped", transactional_id="p-shipped", session_timeout_ms=6000,
                          poll_seconds=1).start()
    producer = Component("producer", topics, logs, source="breast-cancer", passes=2, rate=0, seed=3)
    try:
        producer.start()
        assert producer.wait_exit(120) == 0, producer.log_tail()
        trainer.wait_for(lambda s: s["records_trained"] >= 800, 120, "the train records")
        assert trainer.stop() == 0, trainer.log_tail()
        last = json.loads((tmp_path / "trainer.json").read_text())["last_version"]
        predictor.wait_for(lambda s: s["serving_version"] == last, 120, f"serving the trainer's last version {last}")
        x, _y = breast_cancer()
        sent = produce_inputs(topics["STREAMTRAIN_BOOTSTRAP_SERVERS"], topics["STREAMTRAIN_INPUT_TOPIC"], x[:100])
        predictor.wait_for(lambda s: s["records_predicted"] >= 100, 120, "the input records")
    finally:
        trainer.stop()
        assert predictor.stop() == 0, predictor.log_tail()
    # the other node holds what the trainer's store holds (retention 2 removed the rest there too), byte for byte
    here = model_store.version_numbers(tmp_path / "volume", "streamtrain")
    assert model_store.version_numbers(tmp_path / "other-node", "streamtrain") == here and last in here
    assert model_store.verify(tmp_path / "other-node" / "streamtrain" / str(last)) == \
        model_store.read_manifest(tmp_path / "volume" / "streamtrain" / str(last))
    predictions = read_predictions(topics["STREAMTRAIN_BOOTSTRAP_SERVERS"], topics["STREAMTRAIN_OUTPUT_TOPIC"])
    assert sorted(p["key"] for p in predictions) == sorted(sent.ids)
    assert {p["model_version"] for p in predictions} == {last}


def test_a_trainer_ships_its_whole_store_to_an_empty_topic(topics: dict[str, str], tmp_path: Path) -> None:
    """The topic lost (ephemeral broker storage) or new (shipping just turned on): the store goes out again."""
    x, y = breast_cancer()
    store = tmp_path / "volume"
    model = publish_trained(store, 1, x[:100], y[:100])
    model_store.publish(store, "streamtrain", model_store.load(model.path)[0], 2, {}, keep=5, savedmodel=False)
    settings = EvaluatorSettings(**{k.removeprefix("STREAMTRAIN_").lower(): v for k, v in topics.items()},
                                 model_dir=tmp_path / "reader", model_source="kafka")
    kafka = Producer({"bootstrap.servers": settings.bootstrap_servers})
    assert shipping.ship_store(kafka, settings.model_files_topic, store, "streamtrain") == 2
    kafka.flush(30)
    receiver = shipping.receive(settings, "tests")
    assert receiver is not None
    try:
        wait_until(lambda: model_store.version_numbers(tmp_path / "reader", "streamtrain") == [1, 2], 60,
                   "both versions received")
    finally:
        receiver.stop()

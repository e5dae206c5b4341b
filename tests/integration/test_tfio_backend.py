"""The tensorflow-io ingest backend (tutorial-style), against a real Apache Kafka only.

tensorflow-io's bundled librdkafka fails the embedded broker's ApiVersions handshake, so this test
needs STREAMTRAIN_TEST_KAFKA=host:port of a real Kafka (the kind suite provides one).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from streamtrain.kafka import clients
from streamtrain.store import model_store
from tests.conftest import common_settings
from tests.support.processes import Component

pytestmark = [pytest.mark.integration, pytest.mark.tfio]

REAL_KAFKA = os.environ.get("STREAMTRAIN_TEST_KAFKA")


@pytest.mark.skipif(not REAL_KAFKA, reason="needs a real Apache Kafka: set STREAMTRAIN_TEST_KAFKA=host:port "
                    "(tensorflow-io cannot talk to the embedded broker)")
def test_tensorflow_io_backend_trains_and_evaluates(tmp_path: Path) -> None:
    assert REAL_KAFKA is not None
    prefix = f"tfio{uuid.uuid4().hex[:6]}"
    env = {"STREAMTRAIN_BOOTSTRAP_SERVERS": REAL_KAFKA, "STREAMTRAIN_TRAIN_TOPIC": f"{prefix}.train",
           "STREAMTRAIN_TEST_TOPIC": f"{prefix}.test", "STREAMTRAIN_METRICS_TOPIC": f"{prefix}.metrics",
           "STREAMTRAIN_MODEL_EVENTS_TOPIC": f"{prefix}.events",
           "STREAMTRAIN_DEAD_LETTER_TOPIC": f"{prefix}.dlq"}
    settings = common_settings(env)
    clients.create_topics(clients.admin(settings, "tests"), clients.topic_names(settings), partitions=1)
    producer = Component("producer", env, tmp_path / "logs", source="breast-cancer", passes=2,
                         summary_file=tmp_path / "producer.json", http_port=0).start()
    assert producer.wait_exit(120) == 0
    produced = json.loads((tmp_path / "producer.json").read_text())["produced"]
    trainer = Component("trainer", env, tmp_path / "logs", ingest="tensorflow-io", model_dir=tmp_path / "m",
                        checkpoint_dir=tmp_path / "c", batch_size=32, idle_exit_seconds=15,
                        summary_file=tmp_path / "trainer.json").start()
    assert trainer.wait_exit(300) == 0, trainer.log_tail()
    trained = json.loads((tmp_path / "trainer.json").read_text())
    assert trained["records_trained"] + trained["records_dead_lettered"] == produced["train"]
    assert model_store.version_numbers(tmp_path / "m", "streamtrain")
    evaluator = Component("evaluator", env, tmp_path / "logs", ingest="tensorflow-io", model_dir=tmp_path / "m",
                          report_dir=tmp_path / "r", idle_exit_seconds=15,
                          summary_file=tmp_path / "evaluator.json").start()
    assert evaluator.wait_exit(300) == 0, evaluator.log_tail()
    evaluated = json.loads((tmp_path / "evaluator.json").read_text())
    assert evaluated["records_evaluated"] == produced["test"]
    assert evaluated["accuracy"] >= 0.9

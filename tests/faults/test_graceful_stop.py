"""SIGTERM to all three components mid-stream: each finishes what it holds and exits 0 in time.

The trainer finishes the batch in progress, checkpoints, publishes and exits within its grace
period (--stop-grace-seconds, 25 s by default so it fits Kubernetes' 30 s; 10 s here); the producer
flushes what it has queued, so the broker holds exactly what it counted as acknowledged. A restarted
trainer then trains the rest: exactly once over the whole stream.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from streamtrain.store import checkpoint
from tests.faults.helpers import client_conf, partition_ends
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = pytest.mark.integration

GRACE = 10.0


def test_sigterm_mid_stream_to_every_component(topics: dict[str, str], tmp_path: Path) -> None:
    conf = client_conf(topics)
    logs, models, ckpts = tmp_path / "logs", tmp_path / "models", tmp_path / "ckpt"
    # Still streaming when the SIGTERMs come, however long training takes to get under way (11 min at 3,000/s).
    producer = Component("producer", topics, logs, source="susy", count=2_000_000, rate=3_000, test_fraction=0.2,
                         summary_file=tmp_path / "producer.json")
    trainer = Component("trainer", topics, logs, model_dir=models, checkpoint_dir=ckpts, batch_size=2048,
                        checkpoint_every_seconds=30, publish_every_seconds=30, stop_grace_seconds=GRACE,
                        summary_file=tmp_path / "trainer.json")
    evaluator = Component("evaluator", topics, logs, model_dir=models, report_dir=tmp_path / "reports",
                          poll_seconds=1, session_timeout_ms=6000, summary_file=tmp_path / "evaluator.json")
    components = (producer, trainer, evaluator)
    try:
        trainer.start()
        evaluator.start()
        trainer.wait_for(lambda s: True, 180, "trainer endpoint")
        producer.start()
        trainer.wait_for(lambda s: s["records_trained"] >= 10_000, 180, "training under way")
        for component in components:
            component.signal(signal.SIGTERM)
        sent_at = time.monotonic()
        took = {}
        for component in components:
            assert component.wait_exit(60) == 0, component.log_tail()
            took[component.name] = time.monotonic() - sent_at
    finally:
        for component in components:
            component.stop()
    print("seconds from SIGTERM to exit:", {k: round(v, 1) for k, v in took.items()})
    assert took["trainer"] <= GRACE, took
    assert max(took.values()) <= 30, took  # Kubernetes' default terminationGracePeriodSeconds

    # The trainer's last checkpoint is its state at exit; the producer's count is what the broker holds.
    summary = json.loads((tmp_path / "trainer.json").read_text())
    state = checkpoint.read_latest_state(ckpts)
    assert state is not None and state["records_trained"] == summary["records_trained"]
    assert summary["last_version"] >= 1  # published on the way out
    produced = json.loads((tmp_path / "producer.json").read_text())
    assert produced["stopped_by"] == "SIGTERM" and produced["failed"] == 0
    train = topics["STREAMTRAIN_TRAIN_TOPIC"]
    ends = partition_ends(conf, train)
    assert sum(ends.values()) == produced["produced"]["train"]
    assert sum(partition_ends(conf, topics["STREAMTRAIN_TEST_TOPIC"]).values()) == produced["produced"]["test"]

    trainer.env["STREAMTRAIN_IDLE_EXIT_SECONDS"] = "3"
    trainer.start()
    assert trainer.wait_exit(300) == 0, trainer.log_tail()
    final = checkpoint.read_latest_state(ckpts)
    assert final is not None
    check_exactly_once(final, {train: ends})

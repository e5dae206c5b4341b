"""Broker stall: SIGSTOP the broker for 30 s mid-stream, then SIGCONT.

A frozen broker keeps its TCP connections open, so clients see no error, only silence: produce
requests time out and are retried (idempotence: no duplicates), fetches return nothing. Every
component must stay up, report the stall (metric and log line), and catch up with exact counts.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from streamtrain.kafka.batches import Batch, unseen
from streamtrain.local.broker import EmbeddedBroker
from streamtrain.wire import decode_batch
from tests.faults.helpers import (
    client_conf,
    log_messages,
    metric,
    partition_ends,
    read_all,
    topics_env,
    wait_until,
)
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = pytest.mark.integration

STALL_SECONDS = 30
COUNT = 40_000
RATE = 800  # records/s: the stream runs ~50 s, the stall lands in its middle


def _reports_unreachable(component: Component) -> bool:
    code, text = component.get("/metrics")
    assert code == 200, (component.name, code, component.log_tail())
    return (metric(text, "streamtrain_broker_reachable", component=component.name) == 0
            and (metric(text, "streamtrain_broker_unreachable_seconds", component=component.name) or 0) > 3)


@pytest.mark.slow
def test_broker_stall_of_30_seconds(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    env = topics_env(own_broker)
    conf = client_conf(env)
    logs, models = tmp_path / "logs", tmp_path / "models"
    trainer = Component("trainer", env, logs, model_dir=models, checkpoint_dir=tmp_path / "ckpt", batch_size=128,
                        checkpoint_every_seconds=1, publish_every_seconds=3, summary_file=tmp_path / "trainer.json")
    # The stall times the evaluator's group session out (6 s): it rejoins, and must not count twice.
    evaluator = Component("evaluator", env, logs, model_dir=models, report_dir=tmp_path / "reports",
                          poll_seconds=1, batch_size=256, session_timeout_ms=6000,
                          summary_file=tmp_path / "evaluator.json")
    producer = Component("producer", env, logs, source="susy", count=COUNT, rate=RATE, test_fraction=0.2,
                         summary_file=tmp_path / "producer.json")
    components = (producer, trainer, evaluator)
    assert own_broker.process is not None
    try:
        trainer.start()
        evaluator.start()
        trainer.wait_for(lambda s: True, 120, "trainer endpoint")
        evaluator.wait_for(lambda s: True, 120, "evaluator endpoint")
        producer.start()
        trainer.wait_for(lambda s: s["records_trained"] >= 4_000, 120, "training under way")
        evaluator.wait_for(lambda s: s["records_evaluated"] > 0, 120, "evaluation under way")

        own_broker.process.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        # Frozen: every component is alive (liveness probe passes) and, within the stall, reports the broker as
        # unreachable for more than 3 s (polled: how soon each notices depends on its timeouts and the load).
        for component in components:
            wait_until(lambda c=component: _reports_unreachable(c), STALL_SECONDS - 2 - (time.monotonic() - stopped_at),
                       f"{component.name} to report the stalled broker")
            assert component.process is not None and component.process.poll() is None, component.log_tail()
            assert component.get("/healthz")[0] == 200, component.name
        time.sleep(max(STALL_SECONDS - (time.monotonic() - stopped_at), 0))
        own_broker.process.send_signal(signal.SIGCONT)
        stall = time.monotonic() - stopped_at

        assert producer.wait_exit(300) == 0, producer.log_tail()
        produced = json.loads((tmp_path / "producer.json").read_text())
        n_train, n_test = produced["produced"]["train"], produced["produced"]["test"]
        assert n_train + n_test == COUNT and produced["failed"] == 0
        trainer.wait_for(lambda s: s["records_trained"] >= n_train, 300, "every train record")
        evaluator.wait_for(lambda s: s["records_evaluated"] >= n_test, 300, "every test record")
        for component in (trainer, evaluator):
            code, text = component.get("/metrics")
            assert code == 200, (component.name, component.log_tail())
            assert metric(text, "streamtrain_broker_reachable", component=component.name) == 1
            assert (metric(text, "streamtrain_broker_stalls_total", component=component.name) or 0) >= 1
            assert (metric(text, "streamtrain_broker_last_stall_seconds", component=component.name) or 0) \
                >= STALL_SECONDS - 10
        evaluated = evaluator.status()
        assert trainer.stop(60) == 0, trainer.log_tail()
        assert evaluator.stop(60) == 0, evaluator.log_tail()
    finally:
        if own_broker.process.poll() is None:
            own_broker.process.send_signal(signal.SIGCONT)
        for component in components:
            component.stop()

    # One warning when the stall began and one when it ended, in each component's log.
    for component in components:
        lines = component.log_lines()
        assert log_messages(lines, "Kafka broker stalled"), component.name
        ended = log_messages(lines, "answering again after a stall")
        assert ended and ended[-1]["stall_seconds"] >= STALL_SECONDS - 10, (component.name, ended)
    assert stall >= STALL_SECONDS

    # Exact counts: the broker holds every record once (idempotent retries left no duplicate) ...
    train_ends = partition_ends(conf, env["STREAMTRAIN_TRAIN_TOPIC"])
    assert sum(train_ends.values()) == n_train
    assert sum(partition_ends(conf, env["STREAMTRAIN_TEST_TOPIC"]).values()) == n_test
    values = [m.value() for m in read_all(conf, env["STREAMTRAIN_TRAIN_TOPIC"])]
    assert len(set(values)) == len(values) == n_train  # generated rows are unique: a resend would repeat one
    # ... the trainer trained each exactly once, and the evaluator scored each test record.
    summary = json.loads((tmp_path / "trainer.json").read_text())
    check_exactly_once(summary, {env["STREAMTRAIN_TRAIN_TOPIC"]: train_ends})
    assert summary["records_trained"] == n_train
    assert evaluated is not None and evaluated["records_evaluated"] == n_test, evaluated


def test_records_a_rebalance_hands_back_are_not_scored_twice() -> None:
    """The evaluator's guard for the rejoin above: records below what it handled are dropped from a batch."""
    keys: list[bytes | None] = [b"1", b"0", b"1", None, b"0", b"1"]
    values: list[bytes | None] = [b"1,2", b"3,4", b"x,y", b"5,6", b"7,8", b"9,10"]
    decoded, width = decode_batch(keys, values, 2)
    batch = Batch("t", np.array([0, 1, 0, 1, 0, 1], np.int32), np.array([5, 5, 6, 6, 7, 7]), np.zeros(6, np.int64),
                  keys, values, decoded, width, 0.0)
    fresh, dropped = unseen(batch, {0: 7, 1: 6})
    assert dropped == 3
    assert fresh.offsets.tolist() == [6, 7, 7] and fresh.values == [b"5,6", b"7,8", b"9,10"]
    assert fresh.decoded.features.tolist() == [[7, 8], [9, 10]] and fresh.decoded.good.tolist() == [1, 2]
    assert [(b.index, b.kind) for b in fresh.decoded.bad] == [(0, "missing-label")]
    assert unseen(batch, {}) == (batch, 0)

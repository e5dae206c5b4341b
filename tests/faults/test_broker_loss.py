"""Broker loss: the embedded broker keeps its data in memory, so a restart gives back empty topics.

The trainer must neither retrain silently from offset 0 nor skip data. Measured with tansu 0.6 and
librdkafka 2.16: a consumer at offset N of a topic whose broker restarted empty and was re-filled
reads the new records from N on without any error (fetching past the end returns nothing, no
OFFSET_OUT_OF_RANGE). The trainer notices by the topic id (a re-created topic gets a new one), after
the connection loss and at start-up, and follows --on-offset-loss: `fail` (default) stops with exit
code 3 and one clear error; `restart-from-earliest` keeps the model and trains the new log from its
start, exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamtrain.local.broker import EmbeddedBroker
from streamtrain.models import standardizer
from streamtrain.store import checkpoint, model_store
from tests.faults.helpers import client_conf, log_messages, partition_ends, topics_env, wait_until
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = pytest.mark.integration

OLD = 12_000


def _produce(env: dict[str, str], logs: Path, summary: Path, count: int, seed: int) -> int:
    producer = Component("producer", env, logs, source="susy", count=count, test_fraction=0, seed=seed,
                         summary_file=summary, http_port=0).start()
    assert producer.wait_exit(180) == 0, producer.log_tail()
    produced: int = json.loads(summary.read_text())["produced"]["train"]
    assert produced == count
    return produced


def _recreate_topics(broker: EmbeddedBroker, env: dict[str, str]) -> None:
    """What an operator (or Strimzi's topic operator) does after the loss: the same topics, empty."""
    broker.create_topics([v for k, v in env.items() if k.endswith("_TOPIC")], 2)


@pytest.mark.parametrize(("policy", "new"), [("fail", 4_000), ("restart-from-earliest", 20_000)])
def test_broker_loss_while_training(own_broker: EmbeddedBroker, tmp_path: Path, policy: str, new: int) -> None:
    # fail: the new log is shorter than our offsets; restart-from-earliest: longer, so the trainer's
    # consumer does fetch new records at its old offsets: they must be refused, not trained on.
    env = topics_env(own_broker)
    conf = client_conf(env)
    train = env["STREAMTRAIN_TRAIN_TOPIC"]
    logs, ckpts, models = tmp_path / "logs", tmp_path / "ckpt", tmp_path / "models"
    _produce(env, logs, tmp_path / "old.json", OLD, seed=1)
    old_ends = partition_ends(conf, train)

    trainer = Component("trainer", env, logs, model_dir=models, checkpoint_dir=ckpts, batch_size=256,
                        checkpoint_every_seconds=0.5, publish_every_seconds=2, on_offset_loss=policy,
                        summary_file=tmp_path / "trainer.json")
    try:
        trainer.start()
        trainer.wait_for(lambda s: s["records_trained"] >= OLD, 300, "the first stream")
        wait_until(lambda: (checkpoint.read_latest_state(ckpts) or {}).get("records_trained") == OLD, 60,
                   "a checkpoint of the first stream")

        own_broker.restart()  # SIGKILL, then an empty broker on the same address
        _recreate_topics(own_broker, env)
        _produce(env, logs, tmp_path / "new.json", new, seed=2)
        new_ends = partition_ends(conf, train)

        if policy == "fail":
            assert trainer.wait_exit(180) == 3, trainer.log_tail()
            errors = [line["msg"] for line in trainer.log_lines() if line.get("level") == "error"]
            assert any("re-created" in m and "--on-offset-loss" in m for m in errors), errors
            state = checkpoint.read_latest_state(ckpts)
            assert state is not None
            # Stopped on the old data: the checkpoint holds the first stream exactly once, nothing new.
            check_exactly_once(state, {train: old_ends})
            assert state["records_trained"] == OLD

            # At start-up the same checkpoint is refused the same way (the topic id is checkpointed).
            trainer.start()
            assert trainer.wait_exit(180) == 3, trainer.log_tail()
            errors = [line["msg"] for line in trainer.log_lines() if line.get("level") == "error"]
            assert sum("re-created" in m for m in errors) >= 2, errors
            assert checkpoint.read_latest_state(ckpts) == state
        else:
            trainer.wait_for(lambda s: s["records_trained"] >= OLD + new, 300, "the new stream")
            assert trainer.stop(60) == 0, trainer.log_tail()
            state = checkpoint.read_latest_state(ckpts)
            assert state is not None
            assert state["records_trained"] == OLD + new
            # The lost positions are on record, and the new log was trained from its start, once.
            resets = {r["partition"]: r["lost_offset"] for r in state["offset_resets"]}
            assert resets == old_ends
            assert checkpoint.check_ledger(state, {train: new_ends}) == []
            assert [m for m in log_messages(trainer.log_lines(), "re-created")], trainer.log_tail()
            # The model was kept, not retrained from scratch: its record count spans both logs.
            newest = model_store.newest(models, "streamtrain")
            assert newest is not None and newest.manifest["records_trained"] == OLD + new
            model, _ = model_store.load(newest.path, width=18)
            layer = standardizer(model)
            assert layer is not None and int(np.asarray(layer.count)) == OLD + new
    finally:
        trainer.kill()


def test_broker_loss_while_the_trainer_is_down_is_found_at_start_up(own_broker: EmbeddedBroker,
                                                                   tmp_path: Path) -> None:
    """The broker lost everything while no trainer ran; the restarted trainer must not start from 0."""
    env = topics_env(own_broker)
    conf = client_conf(env)
    train = env["STREAMTRAIN_TRAIN_TOPIC"]
    logs, ckpts = tmp_path / "logs", tmp_path / "ckpt"
    _produce(env, logs, tmp_path / "old.json", 8_000, seed=3)
    trainer = Component("trainer", env, logs, model_dir=tmp_path / "models", checkpoint_dir=ckpts,
                        batch_size=256, idle_exit_seconds=3, publish_every_seconds=5)
    trainer.start()
    assert trainer.wait_exit(300) == 0, trainer.log_tail()
    before = checkpoint.read_latest_state(ckpts)
    assert before is not None and before["records_trained"] == 8_000

    own_broker.restart()
    _recreate_topics(own_broker, env)
    _produce(env, logs, tmp_path / "new.json", 12_000, seed=4)  # longer than before: offsets look valid
    trainer.start()
    assert trainer.wait_exit(180) == 3, trainer.log_tail()
    errors = [line["msg"] for line in trainer.log_lines() if line.get("level") == "error"]
    assert any("re-created" in m and "restart-from-earliest" in m for m in errors), errors
    assert checkpoint.read_latest_state(ckpts) == before  # nothing of the new log was trained

    trainer.env["STREAMTRAIN_ON_OFFSET_LOSS"] = "restart-from-earliest"
    trainer.start()
    assert trainer.wait_exit(300) == 0, trainer.log_tail()
    after = checkpoint.read_latest_state(ckpts)
    assert after is not None and after["records_trained"] == 8_000 + 12_000
    assert checkpoint.check_ledger(after, {train: partition_ends(conf, train)}) == []

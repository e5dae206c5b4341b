"""SIGKILL the trainer mid-stream, restart it: every train record ends up in the model exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamtrain.models import standardizer
from streamtrain.store import checkpoint, model_store
from tests.faults.helpers import wait_until
from tests.support.kafka import partition_ends
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = pytest.mark.integration


def _produce(topics: dict[str, str], tmp_path: Path, count: int) -> dict[str, int]:
    producer = Component("producer", topics, tmp_path / "logs", source="susy", count=count, test_fraction=0,
                         summary_file=tmp_path / "producer.json", http_port=0).start()
    assert producer.wait_exit(120) == 0, producer.log_tail()
    produced: dict[str, int] = json.loads((tmp_path / "producer.json").read_text())["produced"]
    return produced


def test_sigkill_and_restart_trains_every_record_exactly_once(topics: dict[str, str], tmp_path: Path) -> None:
    n = 60_000
    produced = _produce(topics, tmp_path, n)
    assert produced["train"] == n
    models, ckpts = tmp_path / "models", tmp_path / "ckpt"
    trainer = Component("trainer", topics, tmp_path / "logs", model_dir=models, checkpoint_dir=ckpts,
                        batch_size=64, checkpoint_every_seconds=0.3, publish_every_seconds=1,
                        idle_exit_seconds=4, summary_file=tmp_path / "trainer.json")
    kills = []
    for target in (8_000, 20_000, 33_000):
        trainer.start()
        status = trainer.wait_for(lambda s, t=target: s["records_trained"] >= t, 120, f"{target} records")
        trainer.signal(signal.SIGKILL)
        trainer.wait_exit(10)
        saved = checkpoint.read_latest_state(ckpts)
        assert saved is not None
        kills.append((status["records_trained"], saved["records_trained"]))
    trainer.start()
    assert trainer.wait_exit(180) == 0, trainer.log_tail()

    # Each kill lost un-checkpointed work (the model rolled back with its offsets) ...
    assert all(seen >= saved for seen, saved in kills), kills
    # ... and the restarts resumed from checkpoints, so the final model holds every record once.
    state = checkpoint.read_latest_state(ckpts)
    assert state is not None
    ends = partition_ends(topics["STREAMTRAIN_BOOTSTRAP_SERVERS"], topics["STREAMTRAIN_TRAIN_TOPIC"])
    check_exactly_once(state, {topics["STREAMTRAIN_TRAIN_TOPIC"]: ends})
    assert state["records_trained"] == n

    # Independent evidence inside the model: the standardisation layer counts every record it was
    # fitted on, in the same weights the checkpoint restores; a batch trained twice would show here.
    newest = model_store.newest(models, "streamtrain")
    assert newest is not None and newest.manifest["records_trained"] == n
    model, _ = model_store.load(newest.path, width=18)
    layer = standardizer(model)
    assert layer is not None
    assert int(np.asarray(layer.count)) == n
    for number in model_store.version_numbers(models, "streamtrain"):
        model_store.load(models / "streamtrain" / str(number), width=18)  # every kept version loads


def test_sigterm_finishes_batch_checkpoints_and_exits_zero(topics: dict[str, str], tmp_path: Path) -> None:
    _produce(topics, tmp_path, 20_000)
    ckpts = tmp_path / "ckpt"
    trainer = Component("trainer", topics, tmp_path / "logs", model_dir=tmp_path / "models",
                        checkpoint_dir=ckpts, batch_size=32, checkpoint_every_seconds=60,
                        publish_every_seconds=60, summary_file=tmp_path / "trainer.json").start()
    trainer.wait_for(lambda s: s["records_trained"] >= 2_000, 120, "2,000 records")
    trainer.signal(signal.SIGTERM)
    assert trainer.wait_exit(30) == 0
    summary = json.loads((tmp_path / "trainer.json").read_text())
    state = checkpoint.read_latest_state(ckpts)
    assert state is not None
    # The last checkpoint is the state at exit: nothing trained after it, nothing left out of it.
    assert state["records_trained"] == summary["records_trained"] >= 2_000
    assert checkpoint.check_ledger(state) == []
    assert summary["stopped_by"] == "stop signal"
    # `streamtrain inspect` (what an operator runs through kubectl exec) shows the same state.
    shown = subprocess.run([sys.executable, "-m", "streamtrain", "inspect"], capture_output=True, text=True,
                           env={**os.environ, "STREAMTRAIN_CHECKPOINT_DIR": str(ckpts),
                                "STREAMTRAIN_MODEL_DIR": str(tmp_path / "models")}, check=True)
    inspected = json.loads(shown.stdout)
    assert inspected["checkpoint"]["records_trained"] == summary["records_trained"]
    assert inspected["ledger_problems"] == []
    assert [v["ok"] for v in inspected["versions"]] == [True] * len(inspected["versions"]) != []


def test_a_restart_publishes_what_was_checkpointed_but_never_published(topics: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """A kill between a checkpoint and the next publication leaves the checkpoint ahead of the newest version;
    the restarted trainer publishes it on its clean stop even though no new record comes."""
    n = 5_000
    assert _produce(topics, tmp_path, n)["train"] == n
    models, ckpts = tmp_path / "models", tmp_path / "ckpt"
    trainer = Component("trainer", topics, tmp_path / "logs", model_dir=models, checkpoint_dir=ckpts,
                        batch_size=256, checkpoint_every_seconds=0.2, publish_every_seconds=100_000,
                        summary_file=tmp_path / "trainer.json")
    trainer.start()
    trainer.wait_for(lambda s: s["records_trained"] >= n, 120, "every record")
    wait_until(lambda: (checkpoint.read_latest_state(ckpts) or {}).get("records_trained") == n, 60,
               "a checkpoint of every record")
    trainer.signal(signal.SIGKILL)
    trainer.wait_exit(30)
    assert model_store.version_numbers(models, "streamtrain") == []  # checkpointed, never published

    trainer.env["STREAMTRAIN_IDLE_EXIT_SECONDS"] = "3"
    trainer.start()
    assert trainer.wait_exit(120) == 0, trainer.log_tail()
    newest = model_store.newest(models, "streamtrain")
    assert newest is not None, trainer.log_tail()
    assert newest.manifest["records_trained"] == n

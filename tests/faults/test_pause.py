"""An operator pauses the trainer: it consumes nothing, stays paused through a SIGKILL and a restart, and resumes
exactly where it stopped.

The story, on one stream (`streamtrain control pause|resume` as processes, the trainer as a process):
  1. the trainer trains; `control pause`: its state so far is checkpointed and published, then nothing more is
     trained while the stream goes on (status, metrics and health stay up);
  2. SIGKILL while paused, restart: the trainer reads the control topic before consuming and stays paused at the
     records of its last checkpoint;
  3. `control resume`: it trains the rest; the ledger over the whole stream is exact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streamtrain.store import checkpoint, model_store
from tests.faults.helpers import client_conf, partition_ends
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = pytest.mark.integration

QUIET_SECONDS = 4.0  # how long a paused trainer is watched for training anything


def control(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any] | str]:
    done = subprocess.run([sys.executable, "-m", "streamtrain", "control", *args], capture_output=True, text=True,
                          timeout=120, env={**{k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")},
                                            **env, "STREAMTRAIN_LOG_FORMAT": "json"})
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        return done.returncode, done.stdout + done.stderr


def stays_at(trainer: Component, records: int) -> None:
    """The trainer reports `records` trained, paused, over QUIET_SECONDS while the stream goes on."""
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        status = trainer.status()
        assert status is not None and status["paused"] and status["records_trained"] == records, status
        time.sleep(0.25)


def test_pause_survives_a_kill_and_resume_continues_exactly_once(topics: dict[str, str], tmp_path: Path) -> None:
    logs, models, ckpts = tmp_path / "logs", tmp_path / "models", tmp_path / "ckpt"
    producer = Component("producer", topics, logs, source="susy", count=2_000_000, rate=2_000,
                         summary_file=tmp_path / "producer.json")
    trainer = Component("trainer", topics, logs, model_dir=models, checkpoint_dir=ckpts, batch_size=256,
                        checkpoint_every_seconds=30, publish_every_seconds=30, idle_exit_seconds=0)
    try:
        assert control(topics, "status")[1]["paused"] is False  # type: ignore[index]
        producer.start()
        trainer.start()
        trainer.wait_for(lambda s: s["records_trained"] >= 2_000, 180, "training under way")

        rc, paused = control(topics, "pause", "--reason", "labels flipped upstream")
        assert rc == 0 and paused["paused"] and paused["changed"], paused  # type: ignore[index]
        at_pause = trainer.wait_for(lambda s: s["paused"], 60, "the trainer to pause")["records_trained"]
        assert at_pause >= 2_000
        # Checkpointed and published on the way in, although both schedules are 30 s.
        newest = model_store.newest(models, "streamtrain")
        assert newest is not None and newest.manifest["records_trained"] == at_pause
        stays_at(trainer, at_pause)
        assert trainer.status()["paused_by"]["reason"] == "labels flipped upstream"  # type: ignore[index]
        _, metrics = trainer.get("/metrics")
        assert "streamtrain_trainer_paused 1.0" in metrics and trainer.get("/healthz")[0] == 200

        trainer.kill()  # SIGKILL while paused
        trainer.start()
        trainer.wait_for(lambda s: s["paused"], 180, "the restarted trainer, paused")
        stays_at(trainer, at_pause)
        assert control(topics, "pause")[1]["changed"] is False  # type: ignore[index]  # paused already: no event

        rc, resumed = control(topics, "resume")
        assert rc == 0 and not resumed["paused"] and resumed["changed"], resumed  # type: ignore[index]
        trainer.wait_for(lambda s: not s["paused"] and s["records_trained"] > at_pause + 2_000, 180, "resumed")
        producer.signal(signal.SIGTERM)
        assert producer.wait_exit(60) == 0, producer.log_tail()
        trainer.env["STREAMTRAIN_IDLE_EXIT_SECONDS"] = "3"
        trainer.signal(signal.SIGTERM)
        assert trainer.wait_exit(60) == 0, trainer.log_tail()
        trainer.start()  # the rest of the stream, then idle exit
        assert trainer.wait_exit(300) == 0, trainer.log_tail()
    finally:
        producer.stop()
        trainer.stop()

    train = topics["STREAMTRAIN_TRAIN_TOPIC"]
    ends = partition_ends(client_conf(topics), train)
    final = checkpoint.read_latest_state(ckpts)
    assert final is not None
    check_exactly_once(final, {train: ends})
    lines = [line.get("msg") for line in trainer.log_lines()]
    assert lines.count("paused by an operator") == 2 and lines.count("resumed by an operator") == 1, lines


def test_control_refuses_an_unknown_action_in_one_line(topics: dict[str, str]) -> None:
    rc, out = control(topics, "rewind-everything")
    assert rc == 2 and isinstance(out, str) and len(out.strip().splitlines()) == 1, out
    assert "rewind-everything" in out

"""20 SIGKILLs of the trainer during a stream of 200,000 train records (plus 1,000 malformed ones).

Kills land at random moments, right after a model version's staging directory appears (mid-
publication) and right after a checkpoint's staging directory appears (mid-checkpoint); the trainer
is restarted after each. Afterwards:
 - the checkpoint ledger covers every train offset exactly once (trained, or dead-lettered);
 - every version on the volume verifies and loads, and their record counts never go backwards;
 - the final model's record count (its RunningStandardization layer counts every record it was
   fitted on, in the same weights the checkpoint restores) equals produced minus dead-lettered;
 - after every kill, every version visible on the volume was complete.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamtrain.lib import checkpoint, kafka_io, model_store
from streamtrain.lib.models import standardizer
from tests.faults.badinput import KINDS
from tests.faults.helpers import client_conf, partition_ends, produce, read_all
from tests.support.kafka import headers
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD = 200_000
BAD = 1_000
KILLS = 20
RATE = 1_000  # records/s: the stream lasts ~200 s, about as long as 20 kill-and-restart cycles


def _wait_staging(directory: Path, timeout: float) -> bool:
    """Poll (1 ms) until a `.tmp-*` staging directory appears; True if one did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(entry.name.startswith(".tmp-") for entry in os.scandir(directory)):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    return False


def _staged(directory: Path) -> bool:
    return directory.is_dir() and any(p.name.startswith(".tmp-") for p in directory.iterdir())


def test_twenty_sigkills_lose_nothing_and_duplicate_nothing(topics: dict[str, str], tmp_path: Path) -> None:
    conf = client_conf(topics)
    train = topics["STREAMTRAIN_TRAIN_TOPIC"]
    logs, models, ckpts = tmp_path / "logs", tmp_path / "models", tmp_path / "ckpt"
    root = model_store.model_root(models, "streamtrain")
    rnd = random.Random(20)

    producer = Component("producer", topics, logs, source="susy", count=GOOD, rate=RATE, test_fraction=0,
                         summary_file=tmp_path / "producer.json", http_port=0)
    # Malformed records trickle in alongside, on both partitions, through the whole stream.
    bad = [(*KINDS[i % len(KINDS)].make(rnd, 18), i % 2) for i in range(BAD)]
    injector = threading.Thread(target=lambda: produce(conf, train, _paced(bad, GOOD / RATE)), daemon=True)
    trainer = Component("trainer", topics, logs, model_dir=models, checkpoint_dir=ckpts, batch_size=256,
                        n_features=18, checkpoint_every_seconds=0.5, publish_every_seconds=2, keep_versions=10_000,
                        summary_file=tmp_path / "trainer.json")
    kills: list[dict[str, object]] = []
    modes = ["random", "publication", "checkpoint"]
    try:
        producer.start()
        injector.start()
        for i in range(KILLS):
            mode = modes[i % 3] if producer.process is not None and producer.process.poll() is None else "random"
            trainer.start()
            trainer.wait_for(lambda s: True, 300, "trainer endpoint")
            if mode == "random":
                time.sleep(rnd.uniform(0.2, 4.0))
                hit = True
            else:
                hit = _wait_staging(root if mode == "publication" else ckpts, 90)
            trainer.signal(signal.SIGKILL)
            trainer.wait_exit(30)
            mid_write = _staged(root if mode == "publication" else ckpts) if mode != "random" else None
            # At every kill point: each version on the volume is complete, the newest checkpoint is usable.
            for number in model_store.version_numbers(models, "streamtrain"):
                model_store.verify(root / str(number))
            state = checkpoint.read_latest_state(ckpts)
            assert state is None or checkpoint.check_ledger(state) == [], state
            kills.append({"mode": mode, "hit": hit, "mid_write": mid_write,
                          "checkpointed": state["records_trained"] if state else 0})

        assert producer.wait_exit(600) == 0, producer.log_tail()
        injector.join(120)
        trainer.env["STREAMTRAIN_IDLE_EXIT_SECONDS"] = "8"
        trainer.start()
        assert trainer.wait_exit(900) == 0, trainer.log_tail()
    finally:
        producer.stop()
        trainer.kill()

    produced = json.loads((tmp_path / "producer.json").read_text())["produced"]["train"]
    assert produced == GOOD
    print("kills:", json.dumps(kills))
    assert len(kills) == KILLS
    # The staging directory was still there after the kill: the trainer died in the middle of writing.
    assert sum(k["mode"] == "publication" and bool(k["mid_write"]) for k in kills) >= 1, kills
    assert sum(k["mode"] == "checkpoint" and bool(k["mid_write"]) for k in kills) >= 1, kills

    # Exactly once: every offset of the train topic is in the ledger once, as trained or dead-lettered.
    ends = partition_ends(conf, train)
    assert sum(ends.values()) == GOOD + BAD
    state = checkpoint.read_latest_state(ckpts)
    assert state is not None
    check_exactly_once(state, {train: ends})
    assert (state["records_trained"], state["records_dead_lettered"]) == (GOOD, BAD)

    # Every version loads; their record counts never go backwards (a restart resumes, never rewinds).
    numbers = model_store.version_numbers(models, "streamtrain")
    counts = []
    for number in numbers:
        model, manifest = model_store.load(root / str(number), width=18)
        counts.append(manifest["records_trained"])
    assert counts == sorted(counts) and counts[-1] == GOOD, counts
    assert not [p.name for p in root.iterdir() if p.name.startswith((".tmp-", ".del-"))]  # no staging left
    layer = standardizer(model)
    assert layer is not None and int(np.asarray(layer.count)) == sum(ends.values()) - state["records_dead_lettered"]

    # Each malformed record reached the dead-letter topic (at least once: a kill can repeat a dead letter).
    origins = {(int(headers(m)[kafka_io.H_SOURCE_PARTITION]), int(headers(m)[kafka_io.H_SOURCE_OFFSET]))
               for m in read_all(conf, topics["STREAMTRAIN_DEAD_LETTER_TOPIC"])}
    bad_positions = {(m.partition(), m.offset()) for m in read_all(conf, train) if (m.key(), m.value()) in
                     {(k, v) for k, v, _ in bad}}
    assert len(bad_positions) == BAD and bad_positions <= origins


def _paced(records: list[tuple[bytes | None, bytes | None, int]],
           seconds: float) -> Iterator[tuple[bytes | None, bytes | None, int]]:
    """Yield records spread over `seconds`."""
    started = time.monotonic()
    for i, record in enumerate(records):
        delay = started + seconds * i / len(records) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield record

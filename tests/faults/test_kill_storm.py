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

from streamtrain.kafka import clients
from streamtrain.models import standardizer
from streamtrain.store import checkpoint, model_store
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
EXTRA_TRIES = 10  # further kills of a writing mode none of whose kills landed mid-write


def _staging(directory: Path) -> set[str]:
    """Names of the `.tmp-*` staging directories in `directory` now."""
    try:
        return {entry.name for entry in os.scandir(directory) if entry.name.startswith(".tmp-")}
    except FileNotFoundError:
        return set()


def _wait_staging(directory: Path, timeout: float, stale: set[str]) -> bool:
    """Poll (1 ms) until a staging directory other than the `stale` ones appears; True if one did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _staging(directory) - stale:
            return True
        time.sleep(0.001)
    return False


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
        i = 0
        # KILLS kills; then more of a mode (up to EXTRA_TRIES) while none of its kills has landed mid-write,
        # so that the mid-write cases are always exercised, whatever the machine's speed.
        while i < KILLS or (i < KILLS + EXTRA_TRIES and _missing_mid_write(kills) and _running(producer)):
            wanted = _missing_mid_write(kills) if i >= KILLS else [modes[i % 3]]
            mode = wanted[0] if _running(producer) else "random"
            kills.append(_kill_once(trainer, mode, root if mode == "publication" else ckpts, models, ckpts, rnd, i))
            print("kill", json.dumps(kills[-1]), flush=True)  # in the test's captured output if anything fails
            i += 1

        assert producer.wait_exit(600) == 0, producer.log_tail()
        injector.join(120)
        trainer.env["STREAMTRAIN_IDLE_EXIT_SECONDS"] = "8"
        trainer.start()
        assert trainer.wait_exit(900) == 0, trainer.log_tail()
    finally:
        producer.stop()
        trainer.kill()

    story = _story(kills, trainer, ckpts)
    produced = json.loads((tmp_path / "producer.json").read_text())["produced"]["train"]
    assert produced == GOOD, story
    assert len(kills) >= KILLS, story
    # The staging directory was still there after the kill: the trainer died in the middle of writing.
    assert not _missing_mid_write(kills), story

    # Exactly once: every offset of the train topic is in the ledger once, as trained or dead-lettered.
    ends = partition_ends(conf, train)
    assert sum(ends.values()) == GOOD + BAD, story
    state = checkpoint.read_latest_state(ckpts)
    assert state is not None, story
    try:
        check_exactly_once(state, {train: ends})
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{story}") from None
    assert (state["records_trained"], state["records_dead_lettered"]) == (GOOD, BAD), story

    # Every version loads; their record counts never go backwards (a restart resumes, never rewinds).
    numbers = model_store.version_numbers(models, "streamtrain")
    counts = []
    for number in numbers:
        model, manifest = model_store.load(root / str(number), width=18)
        counts.append(manifest["records_trained"])
    assert counts and counts == sorted(counts) and counts[-1] == GOOD, f"records per version {counts}\n{story}"
    assert not [p.name for p in root.iterdir() if p.name.startswith((".tmp-", ".del-"))]  # no staging left
    layer = standardizer(model)
    assert layer is not None and int(np.asarray(layer.count)) == sum(ends.values()) - state["records_dead_lettered"], \
        story

    # Each malformed record reached the dead-letter topic (at least once: a kill can repeat a dead letter).
    origins = {(int(headers(m)[clients.H_SOURCE_PARTITION]), int(headers(m)[clients.H_SOURCE_OFFSET]))
               for m in read_all(conf, topics["STREAMTRAIN_DEAD_LETTER_TOPIC"])}
    bad_positions = {(m.partition(), m.offset()) for m in read_all(conf, train) if (m.key(), m.value()) in
                     {(k, v) for k, v, _ in bad}}
    assert len(bad_positions) == BAD, story
    assert bad_positions <= origins, f"not dead-lettered: {sorted(bad_positions - origins)[:20]}\n{story}"


def _running(producer: Component) -> bool:
    return producer.process is not None and producer.process.poll() is None


def _missing_mid_write(kills: list[dict[str, object]]) -> list[str]:
    """The writing modes none of whose kills has yet landed mid-write."""
    return [mode for mode in ("publication", "checkpoint")
            if not any(k["mode"] == mode and k["mid_write"] for k in kills)]


def _kill_once(trainer: Component, mode: str, staging: Path, models: Path, ckpts: Path, rnd: random.Random,
               number: int) -> dict[str, object]:
    """Start the trainer, kill it (at a random moment, or while it writes into `staging`), check the volume."""
    stale = _staging(staging)  # left by an earlier kill: not this run's writing
    trainer.start()
    trainer.wait_for(lambda s: True, 300, "trainer endpoint")
    if mode == "random":
        # Once this run has trained something while records are left to train, so that kills on a slow machine
        # still interrupt work instead of start-ups only.
        trained, consumed = _checkpointed(ckpts)
        if consumed < GOOD + BAD:
            _wait_progress(trainer, trained, 120)
        time.sleep(rnd.uniform(0.0, 2.0))
        hit = True
    else:
        hit = _wait_staging(staging, 90, stale)
    assert trainer.process is not None and trainer.process.poll() is None, \
        f"kill {number} ({mode}): the trainer exited by itself before it\n{trainer.log_tail()}"
    # SIGSTOP freezes it where it is; what the volume shows then is what a SIGKILL leaves behind.
    trainer.signal(signal.SIGSTOP)
    mid_write = bool(_staging(staging) - stale) if mode != "random" else None
    trainer.signal(signal.SIGKILL)
    trainer.wait_exit(30)
    # At every kill point: each version on the volume is complete, the newest checkpoint is usable.
    root = model_store.model_root(models, "streamtrain")
    for version in model_store.version_numbers(models, "streamtrain"):
        model_store.verify(root / str(version))
    state = checkpoint.read_latest_state(ckpts)
    problems = checkpoint.check_ledger(state) if state else []
    assert not problems, f"kill {number} ({mode}): checkpoint ledger broken: {problems}\n{trainer.log_tail()}"
    return {"kill": number, "run": trainer.runs, "mode": mode, "hit": hit, "mid_write": mid_write,
            "checkpointed": state["records_trained"] if state else 0,
            "offsets": state.get("offsets") if state else None}


def _checkpointed(ckpts: Path) -> tuple[int, int]:
    """(records trained, records trained or dead-lettered) of the newest checkpoint."""
    state = checkpoint.read_latest_state(ckpts)
    if state is None:
        return 0, 0
    return int(state["records_trained"]), int(state["records_trained"]) + int(state["records_dead_lettered"])


def _wait_progress(trainer: Component, beyond: int, timeout: float) -> bool:
    """Wait until the trainer reports more than `beyond` records trained; False if it did not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = trainer.status()
        if status is not None and status["records_trained"] > beyond:
            return True
        time.sleep(0.05)
    return False


def _story(kills: list[dict[str, object]], trainer: Component, ckpts: Path) -> str:
    """What a failure needs to be understood from CI's output alone."""
    state = checkpoint.read_latest_state(ckpts)
    last = {k: state.get(k) for k in ("records_trained", "records_dead_lettered", "offsets")} if state else None
    return ("kills:\n  " + "\n  ".join(json.dumps(k) for k in kills)
            + f"\nlatest checkpoint: {json.dumps(last)}\ntrainer's last run, last lines:\n{trainer.log_tail(40)}")


def _paced(records: list[tuple[bytes | None, bytes | None, int]],
           seconds: float) -> Iterator[tuple[bytes | None, bytes | None, int]]:
    """Yield records spread over `seconds`."""
    started = time.monotonic()
    for i, record in enumerate(records):
        delay = started + seconds * i / len(records) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield record

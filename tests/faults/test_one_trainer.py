"""One model store, one trainer: a second trainer on the same directories never trains beside the first.

The story, on one stream:
  1. trainer A trains; trainer B started on A's directories gives up after --lock-wait-seconds with exit code 4
     and a line naming A (host and pid), while A goes on untouched;
  2. trainer C starts waiting; A gets SIGTERM, checkpoints and exits; C takes over from A's final checkpoint;
  3. C is SIGKILLed mid-stream; trainer D starts at once (the kernel released C's lock: no stale lock to wait out)
     and trains the rest.
The ledger over A, C and D is exact: every record trained exactly once, none twice, none skipped.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from streamtrain.store import checkpoint, model_store
from tests.faults.helpers import client_conf, partition_ends, wait_until
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = pytest.mark.integration


def test_a_second_trainer_never_trains_beside_the_first(topics: dict[str, str], tmp_path: Path) -> None:
    logs, models, ckpts = tmp_path / "logs", tmp_path / "models", tmp_path / "ckpt"
    # Streams until the test stops it, so no step can outlast the stream on a slow machine.
    producer = Component("producer", topics, logs, source="susy", count=2_000_000, rate=3_000,
                         summary_file=tmp_path / "producer.json")

    def trainer(name: str, **options: object) -> Component:
        return Component("trainer", topics, logs / name, model_dir=models, checkpoint_dir=ckpts, batch_size=256,
                         checkpoint_every_seconds=1, publish_every_seconds=2, **options)

    a, b, c, d = (trainer("a"), trainer("b", lock_wait_seconds=2), trainer("c", lock_wait_seconds=120),
                  trainer("d", lock_wait_seconds=5, idle_exit_seconds=3))
    everyone = (producer, a, b, c, d)
    try:
        producer.start()
        a.start()
        a.wait_for(lambda s: s["records_trained"] > 0, 180, "A training")

        b.start()
        assert b.wait_exit(60) == 4, b.log_tail()
        assert a.process is not None and f"pid {a.process.pid}" in b.log_tail(), b.log_tail()
        assert not any(line.get("msg") == "resuming from checkpoint" for line in b.log_lines()), b.log_tail()
        trained_by_a = a.wait_for(lambda s: True, 10, "A still serving")["records_trained"]

        c.start()
        wait_until(lambda: any("waiting for another trainer" in line.get("msg", "") for line in c.log_lines()),
                   120, "C waiting for the lock")
        assert c.status() is None, c.log_tail()  # nothing started while waiting
        a.signal(signal.SIGTERM)
        assert a.wait_exit(60) == 0, a.log_tail()
        at_a_exit = checkpoint.read_latest_state(ckpts)
        assert at_a_exit is not None and at_a_exit["records_trained"] >= trained_by_a
        # C resumes from A's final checkpoint, then trains on.
        c.wait_for(lambda s: s["records_trained"] > at_a_exit["records_trained"], 180, "C training after A")
        c.wait_for(lambda s: s["records_trained"] > at_a_exit["records_trained"] + 2_000, 180, "C trained a while")
        c.kill()

        d.start()
        d.wait_for(lambda s: s["records_trained"] > 0, 180, "D training")
        producer.signal(signal.SIGTERM)
        assert producer.wait_exit(60) == 0, producer.log_tail()
        assert d.wait_exit(300) == 0, d.log_tail()
        assert not any("waiting for another trainer" in line.get("msg", "") for line in d.log_lines())
    finally:
        for component in everyone:
            component.stop()

    train = topics["STREAMTRAIN_TRAIN_TOPIC"]
    ends = partition_ends(client_conf(topics), train)
    assert sum(ends.values()) == json.loads((tmp_path / "producer.json").read_text())["produced"]["train"]
    final = checkpoint.read_latest_state(ckpts)
    assert final is not None
    check_exactly_once(final, {train: ends})
    # One writer at a time: version numbers only ever grew, and the newest holds everything trained.
    newest = model_store.newest(models, "streamtrain")
    assert newest is not None and newest.manifest["records_trained"] == sum(ends.values())

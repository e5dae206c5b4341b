"""A full model volume: publication (and checkpointing) fails cleanly, earlier versions stay intact, training goes on.

The model volume is a size-limited tmpfs the test mounts (CI runs as root); a filler file takes the
last byte. The trainer must keep training and checkpointing, report the condition (metrics and an
error line naming it), leave the versions on the volume untouched and no staging behind, and publish
again once space returns. The ledger stays exact throughout.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamtrain.store import checkpoint, model_store
from tests.faults.helpers import client_conf, log_messages, metric, mount_tmpfs, partition_ends, unmount, wait_until
from tests.support.ledger import check_exactly_once
from tests.support.processes import Component

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    volume = tmp_path / "volume"
    reason = mount_tmpfs(volume, "16m")
    if reason:
        pytest.skip(reason)
    try:
        yield volume
    finally:
        unmount(volume)


def _fill(volume: Path) -> Path:
    filler = volume / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as handle:
        for size in (len(chunk), 4096, 1):  # down to the last byte
            try:
                while True:
                    handle.write(chunk[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def _snapshot(root: Path) -> dict[int, dict[str, object]]:
    return {n: model_store.verify(root / str(n))["files"] for n in model_store.version_numbers(root.parent, root.name)}


@pytest.mark.parametrize("layout", ["separate", "shared"])
def test_full_volume(topics: dict[str, str], tmp_path: Path, small_volume: Path, layout: str) -> None:
    """separate: only the model volume fills (checkpoints elsewhere); shared: models and checkpoints on one
    volume, as the Helm chart mounts them, so checkpoints fail too."""
    conf = client_conf(topics)
    logs, models = tmp_path / "logs", small_volume / "models"
    ckpts = small_volume / "ckpt" if layout == "shared" else tmp_path / "ckpt"
    root = model_store.model_root(models, "streamtrain")
    # A stream longer than any wait below (300 s at 1,000 records/s), stopped by the test once the volume has
    # emptied: the failure window always has records to train and to checkpoint. (A 30 s stream ran out before the
    # volume was filled on a loaded machine, and then nothing failed to write.)
    producer = Component("producer", topics, logs, source="susy", count=300_000, rate=1_000, test_fraction=0,
                         summary_file=tmp_path / "producer.json")
    trainer = Component("trainer", topics, logs, model_dir=models, checkpoint_dir=ckpts, batch_size=128,
                        checkpoint_every_seconds=1, publish_every_seconds=1, keep_versions=2,
                        summary_file=tmp_path / "trainer.json")
    failing_gauge, no_space_gauge, failures = (
        ("streamtrain_trainer_checkpoint_failing", "streamtrain_trainer_checkpoint_no_space",
         "streamtrain_trainer_checkpoint_failures_total") if layout == "shared" else
        ("streamtrain_trainer_publish_failing", "streamtrain_trainer_model_store_no_space",
         "streamtrain_trainer_publish_failures_total"))
    try:
        trainer.start()
        trainer.wait_for(lambda s: True, 180, "trainer endpoint")
        producer.start()
        trainer.wait_for(lambda s: s["last_version"] >= 2, 180, "two versions")

        filler = _fill(small_volume)
        before = _snapshot(root)

        def failing() -> bool:
            text = trainer.get("/metrics")[1]
            return metric(text, failing_gauge) == 1 and metric(text, no_space_gauge) == 1 and \
                (metric(text, failures) or 0) >= 2
        try:
            wait_until(failing, 120, "the trainer to report that writing fails for lack of space")
        except AssertionError as exc:  # say what the trainer was doing, so CI's output explains it
            text = trainer.get("/metrics")[1]
            gauges = {name: metric(text, name) for name in (failing_gauge, no_space_gauge, failures)}
            streaming = producer.process is not None and producer.process.poll() is None
            raise AssertionError(f"{exc}\n  metrics {gauges}\n  status {trainer.status()}\n  producer running: "
                                 f"{streaming}\n{trainer.log_tail(15)}") from None
        full = trainer.status()
        saved = checkpoint.read_latest_state(ckpts)
        assert full is not None and saved is not None
        trainer.wait_for(lambda s: s["records_trained"] >= full["records_trained"] + 3_000, 180,
                         "training to go on while the volume is full")
        # Nothing on the volume changed: the same versions, byte for byte.
        assert _snapshot(root) == before
        # The newest checkpoint keeps model and offsets together, and covers every version on the volume.
        state = checkpoint.read_latest_state(ckpts)
        assert state is not None and checkpoint.check_ledger(state) == []
        if layout == "shared":
            assert state == saved  # no checkpoint could be written; the last good one stands
        assert state["records_trained"] >= max(json.loads((root / str(n) / "manifest.json").read_text())
                                               ["records_trained"] for n in before)

        filler.unlink()  # space returns
        trainer.wait_for(lambda s: s["last_version"] > max(before), 120, "a new version once space returned")
        wait_until(lambda: metric(trainer.get("/metrics")[1], failing_gauge) == 0, 30, "the failing gauge to clear")

        assert producer.stop(60) == 0, producer.log_tail()  # SIGTERM: it flushes and counts what was acknowledged
        n_train = json.loads((tmp_path / "producer.json").read_text())["produced"]["train"]
        trainer.wait_for(lambda s: s["records_trained"] >= n_train, 300, "every record")
        assert trainer.stop(60) == 0, trainer.log_tail()
    finally:
        producer.stop()
        trainer.stop()

    # Every failed attempt removed its staging directory (the trainer was not restarted, which would clean up).
    assert not [p.name for p in [*root.iterdir(), *ckpts.iterdir()] if p.name.startswith((".tmp-", ".del-"))]
    lines = trainer.log_lines()
    failed = log_messages(lines, "checkpoint failed" if layout == "shared" else "publishing failed")
    assert failed and all(line["no_space_left"] for line in failed), failed[:3]
    assert "No space left on device" in failed[0]["error"]
    assert log_messages(lines, "checkpoints work again" if layout == "shared" else "publishing works again")
    summary = json.loads((tmp_path / "trainer.json").read_text())
    train = topics["STREAMTRAIN_TRAIN_TOPIC"]
    check_exactly_once(summary, {train: partition_ends(conf, train)})
    newest = model_store.newest(models, "streamtrain")
    assert newest is not None and newest.manifest["records_trained"] == n_train
    model_store.load(newest.path, width=18)

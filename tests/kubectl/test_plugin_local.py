"""`kubectl streamtrain` against the components running as real processes on the embedded broker (the local
transport): every command, its output formats, its exit codes. One pipeline for the module: trainer, evaluator
(its gate judging on 10 records, so versions are promoted within seconds), predictor and a producer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamtrain.kafka import clients
from streamtrain.local.broker import EmbeddedBroker, free_port
from tests.conftest import common_settings
from tests.support.processes import Component

pytestmark = pytest.mark.integration

FAST = {"session_timeout_ms": 6000, "poll_seconds": 1, "batch_max_wait_ms": 100}


@dataclass
class Plugin:
    """`kubectl-streamtrain --local --local-config FILE ...` as a process, as an operator runs it."""

    config: Path
    components: dict[str, Component]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streamtrain.kubectl.main", "--local", "--local-config",
                               str(self.config), *args], capture_output=True, text=True, timeout=timeout)

    def json(self, *args: str) -> dict[str, Any]:
        done = self.run(*args, "-o", "json")
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        data: dict[str, Any] = json.loads(done.stdout)
        return data


@pytest.fixture(scope="module")
def pipeline(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plugin]:
    tmp = tmp_path_factory.mktemp("plugin")
    prefix = f"k{uuid.uuid4().hex[:8]}"
    topics = {"STREAMTRAIN_BOOTSTRAP_SERVERS": broker.bootstrap,
              **{f"STREAMTRAIN_{name}_TOPIC": f"{prefix}.{name.lower()}" for name in
                 ("TRAIN", "TEST", "METRICS", "MODEL_EVENTS", "DEAD_LETTER", "CONTROL", "MODEL_FILES", "INPUT",
                  "OUTPUT")}}
    settings = common_settings(topics)
    clients.create_topics(clients.admin(settings, "tests"), clients.topic_names(settings), partitions=2,
                          configs=clients.topic_configs(settings))
    models, checkpoints, logs = tmp / "models", tmp / "ckpt", tmp / "logs"
    store = {"STREAMTRAIN_MODEL_DIR": str(models), "STREAMTRAIN_CHECKPOINT_DIR": str(checkpoints)}
    parts = {
        "trainer": Component("trainer", topics, logs, model_dir=models, checkpoint_dir=checkpoints, batch_size=32,
                             publish_every_seconds=1, checkpoint_every_seconds=1, **FAST),
        "evaluator": Component("evaluator", topics, logs, model_dir=models, report_dir=tmp / "reports", window=200,
                               batch_size=64, gate_min_records=10, group_id=f"e-{prefix}", **FAST),
        "predictor": Component("predictor", topics, logs, model_dir=models, serve="promoted",
                               transactional_id=f"p-{prefix}", group_id=f"p-{prefix}", **FAST),
    }
    # A stream that outlasts the module (stopped at the end): test records keep coming, so the gate keeps judging
    # the versions the trainer keeps publishing, also on a loaded machine.
    producer = Component("producer", topics, logs, source="breast-cancer", passes=40, rate=150, seed=3)
    config = tmp / "local.yaml"
    config.write_text(yaml.safe_dump({"urls": {c: f"http://127.0.0.1:{p.port}" for c, p in parts.items()},
                                      "env": {**topics, **store}}))
    try:
        for part in parts.values():
            part.start()
        for part in parts.values():
            part.wait_for(lambda s: True, 90, "its endpoint")
        producer.start()
        parts["trainer"].wait_for(lambda s: (s.get("last_version") or 0) >= 3, 120, "three versions")
        parts["evaluator"].wait_for(lambda s: len(s.get("promoted") or []) >= 2, 120, "two promoted versions")
        parts["predictor"].wait_for(lambda s: s.get("serving_version") is not None, 60, "a served version")
        yield Plugin(config, {**parts, "producer": producer})
    finally:
        for part in [producer, *parts.values()]:
            part.stop()


def test_status_every_format(pipeline: Plugin) -> None:
    data = pipeline.json("status")
    pods = {p["component"]: p for p in data["pods"]}
    assert set(pods) >= {"trainer", "evaluator", "predictor"}
    assert all(p["ready"] for p in pods.values())
    assert pods["trainer"]["records"] > 0 and pods["trainer"]["version"] >= 3
    assert 0 <= pods["trainer"]["accuracy"] <= 1 and pods["trainer"]["records_per_second"] is not None
    assert pods["evaluator"]["accuracy"] is not None
    summary = data["summary"]
    assert summary["newest_version"] >= 3 and summary["promoted_version"] >= 1
    assert summary["serving_versions"] and summary["paused"] in (False, None)
    assert summary["drift_events"] is not None
    # yaml says the same; the plain table (stdout is a pipe here) has a row per pod and "—" for what is missing
    assert yaml.safe_load(pipeline.run("status", "-o", "yaml", "--sample-seconds", "0").stdout)["pods"]
    table = pipeline.run("status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["COMPONENT", "POD", "READY"]
    assert {line.split()[0] for line in lines[1:4]} == {"trainer", "evaluator", "predictor"}
    assert "last checkpoint (s ago): —" in table.stdout or "last checkpoint (s ago): " in table.stdout
    print("status table:\n" + table.stdout)


def test_versions(pipeline: Plugin) -> None:
    data = pipeline.json("versions")
    rows = {r["version"]: r for r in data["versions"]}
    assert len(rows) >= 3
    promoted = [v for v, r in rows.items() if r["gate"] == "promoted"]
    assert promoted, rows
    stored = [r for r in rows.values() if r["in_store"]]
    assert all(r["records_trained"] > 0 for r in stored)
    assert data["serve_policy"] == "promoted"  # from the predictor's /status
    assert data["serving"] in promoted and rows[data["serving"]]["serving"]
    assert any(r["accuracy"] is not None for r in rows.values())  # the evaluator's per-version figures
    table = pipeline.run("versions")
    assert table.returncode == 0 and table.stdout.startswith("VERSION"), table.stderr


def test_pin_unpin_rollback(pipeline: Plugin) -> None:
    predictor = pipeline.components["predictor"]
    listed = pipeline.json("versions")
    # the newest stored version that is not served: retention keeps the newest ones while more are published
    target = max(r["version"] for r in listed["versions"] if r["in_store"] and r["version"] != listed["serving"])
    pinned = pipeline.json("pin", str(target))
    assert pinned["pinned"] == target and pinned["serving"] == target
    started = time.monotonic()
    predictor.wait_for(lambda s: s["serving_version"] == target, 30, f"the pinned version {target}")
    print(f"pin reached the predictor {time.monotonic() - started:.2f} s after the plugin returned")
    assert pipeline.json("status", "--sample-seconds", "0")["summary"]["pinned_version"] == target
    unpinned = pipeline.json("unpin")
    assert unpinned["pinned"] is None
    predictor.wait_for(lambda s: s["pinned"] is None, 30, "the unpin")
    # two promoted versions (the fixture waited for them; retention keeps promoted ones): one to go back to
    rolled = pipeline.json("rollback")
    assert rolled["pinned"] is not None and rolled["pinned"] in rolled["promoted"]
    predictor.wait_for(lambda s: s["serving_version"] == rolled["pinned"], 30, "the rollback")
    assert pipeline.json("unpin")["pinned"] is None


def test_unknown_version_is_not_found(pipeline: Plugin) -> None:
    done = pipeline.run("pin", "9999")
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and "9999" in done.stderr and "not in the model store" in done.stderr


def test_bad_usage_is_exit_2(pipeline: Plugin) -> None:
    for args in (["frobnicate"], ["pin"], ["pin", "seven"], ["pin", "0"], ["status", "-o", "xml"]):
        done = pipeline.run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("kubectl streamtrain: error:"), done.stderr


def test_no_components_is_not_found(tmp_path: Path) -> None:
    dead = {c: f"http://127.0.0.1:{free_port()}" for c in ("producer", "trainer", "evaluator", "predictor")}
    config = tmp_path / "nothing.yaml"
    config.write_text(yaml.safe_dump({"urls": dead}))
    for command in (["status"], ["versions"], ["unpin"], ["pause"]):
        done = subprocess.run([sys.executable, "-m", "streamtrain.kubectl.main", "--local-config", str(config),
                               *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, (command, done.stderr)
        assert done.stderr.count("\n") == 1 and "no streamtrain pods found" in done.stderr


def test_pause_resume(pipeline: Plugin) -> None:
    trainer = pipeline.components["trainer"]
    paused = pipeline.json("pause", "--reason", "plugin test")
    assert paused["paused"] is True
    trainer.wait_for(lambda s: s.get("paused") is True, 30, "the pause")
    assert pipeline.json("status", "--sample-seconds", "0")["summary"]["paused"] is True
    resumed = pipeline.json("resume")
    assert resumed["paused"] is False
    trainer.wait_for(lambda s: s.get("paused") is False, 30, "the resume")


def test_rewind_and_skip_reach_the_trainer_and_bring_back_its_refusal(pipeline: Plugin) -> None:
    """The plugin's rewind and skip travel to the trainer and back (the whole incident story is
    tests/faults/test_rewind_skip.py): a version that does not exist, and a skip to before where it stands,
    are refused by the trainer, exit 1 with its reason in one line; nothing is applied."""
    trainer = pipeline.components["trainer"]
    before = trainer.wait_for(lambda s: True, 10, "the trainer's status")["lineage"]
    done = pipeline.run("rewind", "--to-version", "99999")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "refused the rewind: version 99999 is not in the model store" in done.stderr
    done = pipeline.run("skip", "--to-offsets", "0:0")
    assert done.returncode == 1 and "refused the skip" in done.stderr, done.stderr
    assert trainer.wait_for(lambda s: True, 10, "the trainer's status")["lineage"] == before
    assert pipeline.run("rewind").returncode == 2  # --to-version or --to-time is required

"""`kubectl streamtrain` against the components running as real processes on the embedded broker (the local
transport): every command, its output formats, its exit codes. One pipeline for the module: trainer, evaluator
(its gate judging on 10 records, so versions are promoted within seconds), predictor and a producer."""

from __future__ import annotations

import json
import re
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
from confluent_kafka import Consumer, Producer

from streamtrain.kafka import clients
from streamtrain.local.broker import EmbeddedBroker, free_port
from streamtrain.wire import encode_rows
from tests.conftest import common_settings
from tests.support.processes import Component
from tests.support.serving import breast_cancer

pytestmark = pytest.mark.integration

FAST = {"session_timeout_ms": 6000, "poll_seconds": 1, "batch_max_wait_ms": 100}
FED = 20  # input records for the predictor


@dataclass
class Plugin:
    """`kubectl-streamtrain --local --local-config FILE ...` as a process, as an operator runs it."""

    config: Path
    components: dict[str, Component]
    env: dict[str, str]  # the topics and the broker

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
        # A few unlabelled rows for the predictor to score, so that it knows (and reports) its lag.
        feed = Producer({"bootstrap.servers": broker.bootstrap})
        for i, value in enumerate(encode_rows(breast_cancer()[0][:FED])):
            feed.produce(topics["STREAMTRAIN_INPUT_TOPIC"], key=f"id-{i}".encode(), value=value, partition=i % 2)
        assert feed.flush(30) == 0
        parts["predictor"].wait_for(lambda s: s["records_predicted"] == FED and s.get("lag") is not None, 60,
                                    f"{FED} input records scored")
        yield Plugin(config, {**parts, "producer": producer}, topics)
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
    # every component reports its consumer lag (the producer has none)
    assert all(isinstance(pods[c]["lag"], int) for c in ("trainer", "evaluator", "predictor")), pods
    assert pods["predictor"]["lag"] == 0  # it scored every input record there is
    summary = data["summary"]
    assert summary["newest_version"] >= 3 and summary["promoted_version"] >= 1
    assert summary["serving_versions"] and summary["paused"] in (False, None)
    assert summary["drift_events"] is not None
    # the trainer checkpoints every second: its last checkpoint is seconds old
    assert isinstance(summary["checkpoint_age_seconds"], float) and 0 <= summary["checkpoint_age_seconds"] < 60
    # no operator has rewound or skipped anything yet (those tests come later in this module)
    assert (summary["lineage"], summary["lineage_started"], summary["records_skipped"]) == (0, None, 0)
    assert pods["trainer"]["lineage"] == 0 and pods["evaluator"]["lineage"] is None
    # yaml says the same; the plain table (stdout is a pipe here) has a row per pod and "—" for what is missing
    assert yaml.safe_load(pipeline.run("status", "-o", "yaml", "--sample-seconds", "0").stdout)["pods"]
    table = pipeline.run("status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["COMPONENT", "POD", "READY"]
    assert {line.split()[0] for line in lines[1:4]} == {"trainer", "evaluator", "predictor"}
    assert re.search(r"^last checkpoint \(s ago\): \d+\.\d{3}$", table.stdout, re.M), table.stdout
    assert re.search(r"^trainer lineage: 0 \(never rewound\)$", table.stdout, re.M), table.stdout
    assert re.search(r"^records skipped by operators: 0$", table.stdout, re.M), table.stdout
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
    # where each version stands in the train topic, whole: what a rewind to it trains again from
    train = pipeline.env["STREAMTRAIN_TRAIN_TOPIC"]
    for r in stored:
        assert set(r["offsets"]) == {train} and set(r["offsets"][train]) <= {"0", "1"}, r
        assert sum(r["offsets"][train].values()) == r["records_trained"] + r["records_dead_lettered"], r
        assert 0 <= r["metrics"]["prequential_accuracy"] <= 1, r
    table = pipeline.run("versions")
    assert table.returncode == 0 and table.stdout.startswith("VERSION"), table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:4] == ["VERSION", "RECORDS", "TRAINED", "OFFSETS"], header
    newest = max(r["version"] for r in stored)
    shown = next(line.split() for line in lines if line.split()[0] == str(newest))
    assert shown[2] == ",".join(f"{p}:{o}" for p, o in sorted(rows[newest]["offsets"][train].items())), shown


def test_pin_unpin_rollback(pipeline: Plugin) -> None:
    predictor = pipeline.components["predictor"]
    # Paused, the trainer publishes nothing, so retention removes no version while this test pins it: running, it
    # can drop the one just pinned before its control reader has seen the pin (a loaded machine widens that gap).
    assert pipeline.json("pause", "--reason", "plugin test: pin")["paused"] is True
    pipeline.components["trainer"].wait_for(lambda s: s["paused"], 30, "the pause")
    try:
        listed = pipeline.json("versions")
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
    finally:
        pipeline.run("resume")


def test_unknown_version_is_not_found(pipeline: Plugin) -> None:
    done = pipeline.run("pin", "9999")
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and "9999" in done.stderr and "not in the model store" in done.stderr


def test_bad_usage_is_exit_2(pipeline: Plugin) -> None:
    for args in (["frobnicate"], ["pin"], ["pin", "seven"], ["pin", "0"], ["status", "-o", "xml"],
                 ["rewind", "--to-version", "abc"], ["rewind", "--to-time", "yesterday"],
                 ["skip", "--to-offsets", "all"]):
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
    tests/faults/test_rewind_skip.py): a version that does not exist, or a time before the topic's start (no version
    was trained only on records before it), is not found (exit 3); a skip to before where the trainer stands is
    refused (exit 1); each with the trainer's reason in one line, and nothing is applied."""
    trainer = pipeline.components["trainer"]
    before = trainer.wait_for(lambda s: True, 10, "the trainer's status")["lineage"]
    done = pipeline.run("rewind", "--to-version", "99999")
    assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
    assert "refused the rewind: version 99999 is not in the model store" in done.stderr
    done = pipeline.run("rewind", "--to-time", "2000-01-01T00:00:00Z")
    assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
    assert ("refused the rewind: no version in the model store was trained only on records before 946684800000 ms"
            in done.stderr), done.stderr
    done = pipeline.run("skip", "--to-offsets", "0:0")
    assert done.returncode == 1 and "refused the skip" in done.stderr, done.stderr
    assert trainer.wait_for(lambda s: True, 10, "the trainer's status")["lineage"] == before
    assert pipeline.run("rewind").returncode == 2  # --to-version or --to-time is required


def test_rewind_and_skip_applied_through_the_plugin(pipeline: Plugin) -> None:
    """With the trainer paused: rewind to the oldest version in the store (paused, the trainer publishes nothing, so
    retention removes nothing; newer versions trained more, so records follow it), then skip what it would train
    again, up to the end of the topic; each answer says what was done, and `status` shows the new lineage and the
    skipped records."""
    trainer = pipeline.components["trainer"]
    train = pipeline.env["STREAMTRAIN_TRAIN_TOPIC"]
    assert pipeline.json("pause", "--reason", "plugin test: rewind")["paused"] is True
    started = trainer.wait_for(lambda s: s["paused"], 30, "the pause")
    rows = {r["version"]: r for r in pipeline.json("versions")["versions"]}
    target = min(v for v, r in rows.items() if r["in_store"])

    rewound = pipeline.json("rewind", "--to-version", str(target), "--reason", "plugin test")
    assert rewound["applied"] is True and rewound["action"] == "rewind", rewound
    assert rewound["to_version"] == target and rewound["lineage"] == started["lineage"] + 1, rewound
    assert rewound["published_version"] > max(rows), rewound  # the rewound model, published at once
    # back exactly where the version stands, as `versions` shows it
    assert rewound["offsets"] == rows[target]["offsets"][train], (rewound, rows[target])
    assert rewound["records_trained"] == rows[target]["records_trained"], (rewound, rows[target])
    summary = pipeline.json("status", "--sample-seconds", "0")["summary"]
    assert summary["lineage"] == rewound["lineage"] and summary["lineage_started"]["to_version"] == target, summary
    table = pipeline.run("status", "--sample-seconds", "0").stdout
    assert f"trainer lineage: {rewound['lineage']} (since a rewind to version {target}, from version" in table

    # Up to where the topic ends now (the producer goes on: the broker's high watermarks), at least to where the
    # newest version stands (records that are there for sure: the embedded broker's watermarks can lag).
    probe = Consumer({"bootstrap.servers": pipeline.env["STREAMTRAIN_BOOTSTRAP_SERVERS"], "group.id": "probe"})
    try:
        marks = clients.watermarks(probe, train)
    finally:
        probe.close()
    newest = rows[max(v for v, r in rows.items() if r["in_store"])]["offsets"][train]
    ends = {p: max(high, newest.get(str(p), 0)) for p, (_low, high) in marks.items()}
    at = {int(p): o for p, o in rewound["offsets"].items()}
    expected = {str(p): [at[p], end] for p, end in ends.items() if end > at[p]}
    assert expected, (at, ends)  # the newest version trained more
    skipped = pipeline.json("skip", "--to-offsets", ",".join(f"{p}:{o}" for p, o in sorted(ends.items())),
                            "--reason", "plugin test")
    assert skipped["applied"] is True and skipped["skipped"] == expected, (skipped, at, ends)
    assert skipped["offsets"] == {str(p): o for p, o in ends.items()} and skipped["lineage"] == rewound["lineage"]
    count = sum(end - start for start, end in expected.values())
    assert pipeline.json("resume")["paused"] is False
    status = trainer.wait_for(lambda s: not s["paused"], 30, "the resume")
    assert status["records_skipped"] == started["records_skipped"] + count, (status, count)
    assert pipeline.json("status", "--sample-seconds", "0")["summary"]["records_skipped"] == status["records_skipped"]

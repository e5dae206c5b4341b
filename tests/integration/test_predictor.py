"""The predictor as a process against the real broker: the stream scored exactly once, the quality gate deciding
what is served, pin and rollback across replicas."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from streamtrain.kafka import clients
from streamtrain.predictor.main import Predictor
from streamtrain.service import loop
from streamtrain.service.config import PredictorSettings
from streamtrain.service.runtime import StopFlag
from streamtrain.store import model_store
from tests.support.kafka import hides_aborted_records, read_all
from tests.support.processes import Component
from tests.support.serving import (
    breast_cancer,
    dead_letter_keys,
    produce_inputs,
    produce_labelled,
    publish_trained,
    read_predictions,
    repeats,
)

pytestmark = pytest.mark.integration

FAST = {"session_timeout_ms": 6000, "poll_seconds": 1, "batch_max_wait_ms": 100}
BATCH = 100


def group() -> str:
    """A consumer group of the test's own: the broker outlives the test, and so would a shared group's members."""
    return f"predictor-{uuid.uuid4().hex[:8]}"


def serving(topics: dict[str, str], models: Path, *args: str) -> dict:
    """`streamtrain serving ...` as an operator runs it."""
    env = {**topics, "STREAMTRAIN_MODEL_DIR": str(models), "STREAMTRAIN_LOG_FORMAT": "json",
           "STREAMTRAIN_SERVE": "newest"}
    env.update({k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")})
    done = subprocess.run([sys.executable, "-m", "streamtrain", "serving", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"serving {args}: {done.stdout}\n{done.stderr[-2000:]}"
    return json.loads(done.stdout)


def test_stream_is_scored_once_with_the_served_version(topics: dict[str, str], tmp_path: Path) -> None:
    bootstrap = topics["STREAMTRAIN_BOOTSTRAP_SERVERS"]
    x, y = breast_cancer()
    models = tmp_path / "models"
    version = publish_trained(models, 1, x, y)
    inputs = produce_inputs(bootstrap, topics["STREAMTRAIN_INPUT_TOPIC"], x, bad_every=50)
    predictor = Component("predictor", topics, tmp_path / "logs", group_id=group(), model_dir=models, serve="newest",
                          transactional_id="p-once", batch_size=100, summary_file=tmp_path / "p.json", **FAST).start()
    try:
        predictor.wait_for(lambda s: s["records_predicted"] + s["records_dead_lettered"] >= len(x), 180,
                           "every input record")
    finally:
        assert predictor.stop() == 0, predictor.log_tail()
    predictions = read_predictions(bootstrap, topics["STREAMTRAIN_OUTPUT_TOPIC"])
    keys = [p["key"] for p in predictions]
    assert not repeats(keys), f"predictions written twice: {repeats(keys)}"
    assert sorted(keys) == sorted(inputs.ids)
    assert sorted(dead_letter_keys(bootstrap, topics["STREAMTRAIN_DEAD_LETTER_TOPIC"])) == sorted(inputs.bad_ids)
    # the served version's own scores, computed here
    model, _ = model_store.load(version.path)
    expected = np.asarray(model(x, training=False))[:, 0]
    by_key = {p["key"]: p for p in predictions}
    for i in range(len(x)):
        p = by_key.get(f"id-{i}")
        if p is not None:
            assert p["model_version"] == 1 and p["class"] == int(p["probability"] >= 0.5)
            assert abs(p["probability"] - expected[i]) < 1e-5, (i, p, expected[i])
    offsets = {(p["partition"], p["offset"]) for p in predictions}
    assert len(offsets) == len(predictions)  # each names the input record it scored
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["records_predicted"] == len(inputs.ids)
    assert summary["records_dead_lettered"] == len(inputs.bad_ids)


def test_gate_rejects_a_worse_version_and_it_is_never_served(topics: dict[str, str], tmp_path: Path) -> None:
    bootstrap = topics["STREAMTRAIN_BOOTSTRAP_SERVERS"]
    x, y = breast_cancer()
    models, logs = tmp_path / "models", tmp_path / "logs"
    publish_trained(models, 1, x, y)
    evaluator = Component("evaluator", topics, logs, model_dir=models, report_dir=tmp_path / "reports",
                          gate_min_records=300, batch_size=100, **FAST).start()
    predictor = Component("predictor", topics, logs, group_id=group(), model_dir=models, transactional_id="p-gate",
                          batch_size=50, **FAST).start()
    test_topic, input_topic = topics["STREAMTRAIN_TEST_TOPIC"], topics["STREAMTRAIN_INPUT_TOPIC"]
    try:
        produce_labelled(bootstrap, test_topic, x, y)
        evaluator.wait_for(lambda s: 1 in s.get("promoted", []), 180, "version 1 promoted")
        predictor.wait_for(lambda s: s["serving_version"] == 1, 60, "serving version 1")
        produce_inputs(bootstrap, input_topic, x[:200], start=0)

        publish_trained(models, 2, x, y, flip=True)  # learnt the labels backwards: worse than version 1
        evaluator.wait_for(lambda s: s["model_version"] == 2, 60, "version 2 loaded")
        produce_labelled(bootstrap, test_topic, x, y)
        status = evaluator.wait_for(lambda s: "2" in s.get("rejected", {}) or 2 in s.get("rejected", {}), 180,
                                    "version 2 rejected")
        produce_inputs(bootstrap, input_topic, x[200:400], start=200)

        publish_trained(models, 3, x, y, seed=1)
        evaluator.wait_for(lambda s: s["model_version"] == 3, 60, "version 3 loaded")
        produce_labelled(bootstrap, test_topic, x, y)
        evaluator.wait_for(lambda s: 3 in s.get("promoted", []), 180, "version 3 promoted")
        predictor.wait_for(lambda s: s["serving_version"] == 3, 60, "serving version 3")
        produce_inputs(bootstrap, input_topic, x[400:], start=400)
        predictor.wait_for(lambda s: s["records_predicted"] >= len(x), 120, "every input record")
    finally:
        assert predictor.stop() == 0, predictor.log_tail()
        assert evaluator.stop() == 0, evaluator.log_tail()
    verdicts = {v["version"]: v for v in status["verdicts"]}
    assert verdicts[2]["decision"] == "rejected" and "worse than the promoted" in verdicts[2]["reason"], verdicts
    predictions = read_predictions(bootstrap, topics["STREAMTRAIN_OUTPUT_TOPIC"])
    served = {p["model_version"] for p in predictions}
    assert 2 not in served, "the rejected version scored records"
    assert [p["model_version"] for p in predictions if int(p["key"].split("-")[1]) >= 400] == \
        [3] * (len(x) - 400)
    assert len(predictions) == len(x) and not repeats([p["key"] for p in predictions])
    control = [json.loads(m.value()) for m in read_all(bootstrap, topics["STREAMTRAIN_CONTROL_TOPIC"])]
    assert [(e["version"], e["decision"]) for e in control] == [(1, "promoted"), (2, "rejected"), (3, "promoted")]


def test_pin_and_rollback_reach_every_replica_and_survive_a_restart(topics: dict[str, str], tmp_path: Path) -> None:
    x, y = breast_cancer()
    models, logs = tmp_path / "models", tmp_path / "logs"
    for number in (1, 2, 3):
        publish_trained(models, number, x[:200], y[:200], seed=number)
    shared = group()
    replicas = [Component("predictor", topics, logs / f"r{i}", group_id=shared, model_dir=models, serve="newest",
                          transactional_id=f"p-pin-{i}", **FAST).start() for i in range(3)]
    try:
        for replica in replicas:
            replica.wait_for(lambda s: s["serving_version"] == 3, 120, "serving the newest version")
        started = time.monotonic()
        assert serving(topics, models, "pin", "1")["pinned"] == 1
        returned = time.monotonic()
        for replica in replicas:
            replica.wait_for(lambda s: s["serving_version"] == 1, 60, "pinned version 1")
        print(f"pin: the command took {returned - started:.2f} s; all {len(replicas)} replicas served the pinned "
              f"version {time.monotonic() - returned:.2f} s after it returned")
        replicas[0].kill()  # a replica restarted while pinned comes back serving the pin
        replicas[0].start().wait_for(lambda s: s["serving_version"] == 1, 120, "version 1 after the restart")
        assert serving(topics, models, "unpin")["serving"] == 3
        for replica in replicas:
            replica.wait_for(lambda s: s["serving_version"] == 3, 60, "the newest version again")
        rolled = serving(topics, models, "rollback")  # no promotions (serve newest): the version before it
        assert rolled["pinned"] == 2 and rolled["serving"] == 2, rolled
        for replica in replicas:
            replica.wait_for(lambda s: s["serving_version"] == 2, 60, "rolled back to version 2")
        assert serving(topics, models, "status")["pinned"] == 2
    finally:
        for replica in replicas:
            replica.stop()


def test_version_swap_under_load_fails_no_request_and_loses_no_record(topics: dict[str, str],
                                                                        tmp_path: Path) -> None:
    bootstrap = topics["STREAMTRAIN_BOOTSTRAP_SERVERS"]
    x, y = breast_cancer()
    models = tmp_path / "models"
    publish_trained(models, 1, x, y)
    predictor = Component("predictor", topics, tmp_path / "logs", group_id=group(), model_dir=models, serve="newest",
                          transactional_id="p-swap", batch_size=100, **FAST).start()
    predictor.wait_for(lambda s: s["serving_version"] == 1, 120, "serving version 1")
    url = f"http://127.0.0.1:{predictor.port}/v1/models/streamtrain:predict"
    body = json.dumps({"instances": x[:4].tolist()}).encode()
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:  # one client, back to back, for as long as the swap takes
        while not stop.is_set():
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    codes.append(answer.status)
                    assert len(json.load(answer)["predictions"]) == 4
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
            except OSError:
                codes.append(0)

    clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        sent = produce_inputs(bootstrap, topics["STREAMTRAIN_INPUT_TOPIC"], x[:300])
        predictor.wait_for(lambda s: s["records_predicted"] >= 300, 120, "the first records, by version 1")
        publish_trained(models, 2, x, y, seed=2)
        predictor.wait_for(lambda s: s["serving_version"] == 2, 60, "serving version 2")
        sent2 = produce_inputs(bootstrap, topics["STREAMTRAIN_INPUT_TOPIC"], x[300:], start=300)
        predictor.wait_for(lambda s: s["records_predicted"] >= len(x), 120, "every input record")
    finally:
        stop.set()
        for client in clients:
            client.join(15)
        assert predictor.stop() == 0, predictor.log_tail()
    assert codes and set(codes) == {200}, f"{len(codes)} requests: {dict(Counter(codes))}"
    predictions = read_predictions(bootstrap, topics["STREAMTRAIN_OUTPUT_TOPIC"])
    assert sorted(p["key"] for p in predictions) == sorted(sent.ids + sent2.ids)
    assert {p["model_version"] for p in predictions} == {1, 2}


class CommitFailsOnce:
    """The predictor's real transactional producer, except that one commit fails before it reaches the broker (as a
    commit that timed out would): the predictor must abort that transaction and score its records again."""

    def __init__(self, real: Producer, fail_at: int) -> None:
        self.real, self.fail_at, self.commits = real, fail_at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def commit_transaction(self, *args: Any) -> None:
        self.commits += 1
        if self.commits == self.fail_at:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit failed (injected)"))
        self.real.commit_transaction(*args)


def test_an_aborted_transaction_is_scored_again_and_nothing_after_it_is_lost(
        topics: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A failed commit while the next batches are already scored: they are dropped with it and read again."""
    bootstrap = topics["STREAMTRAIN_BOOTSTRAP_SERVERS"]
    x, y = breast_cancer()
    models = tmp_path / "models"
    publish_trained(models, 1, x, y)
    inputs = produce_inputs(bootstrap, topics["STREAMTRAIN_INPUT_TOPIC"], x, bad_every=50)
    for name, value in topics.items():
        monkeypatch.setenv(name, value)
    s = PredictorSettings(model_dir=models, serve="newest", group_id=group(), transactional_id="p-abort",
                          batch_size=BATCH, http_port=0, max_records=len(x), idle_exit_seconds=30,
                          session_timeout_ms=6000, batch_max_wait_ms=100)
    producer = CommitFailsOnce(clients.producer(s, "predictor", **{"transactional.id": s.transactional_id}), 3)
    summary = loop.run(Predictor(s, StopFlag(), producer=producer), s, StopFlag())  # type: ignore[arg-type]

    assert summary["transactions_aborted"] == 1 and summary["stopped_by"] == "max records", summary
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"errors logged for an abort the predictor recovers from: {errors}"
    assert summary["records_predicted"] == len(inputs.ids), summary
    keys = [p["key"] for p in read_predictions(bootstrap, topics["STREAMTRAIN_OUTPUT_TOPIC"])]
    assert sorted(set(keys)) == sorted(inputs.ids)
    dead = dead_letter_keys(bootstrap, topics["STREAMTRAIN_DEAD_LETTER_TOPIC"])
    assert sorted(set(dead)) == sorted(inputs.bad_ids)
    again = {**repeats(keys), **repeats(dead)}
    if hides_aborted_records(bootstrap):
        assert not again, f"records scored twice: {again}"
    else:  # the aborted batch's records can stay visible there; nothing scored after it was sent
        assert len(again) <= BATCH, f"{len(again)} repeats, more than the aborted batch: {again}"

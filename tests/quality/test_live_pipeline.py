"""A drifting stream through the real pipeline: the drift event reaches the metrics topic, the manifest,
Prometheus and the checkpoint; the evaluator's live page shows it in headless Chromium; `streamtrain report`
turns the run into an HTML report.

One pipeline for the module (producer, trainer, evaluator as processes against the embedded broker),
streamed at a fixed rate so the page can be watched while it runs. The drift source changes concept
abruptly at generator record 12,000; single-partition topics keep the trainer's order the produced one.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streamtrain import report
from streamtrain.kafka import clients
from streamtrain.local.broker import EmbeddedBroker
from streamtrain.service import config
from streamtrain.service.config import ReportSettings
from streamtrain.store import model_store
from tests.conftest import ARTIFACTS, common_settings
from tests.support.browser import Browser, ensure_chromium
from tests.support.processes import Component

pytestmark = pytest.mark.integration

COUNT = 24_000
DRIFT_AT = 12_000  # generator record index of the concept change
TEST_FRACTION = 0.2
SEED = 42
RATE = 1500  # records/s: about 16 s of streaming
DETECTION_DELAY = 600  # records of the train stream (measured: within one or two batches of 32)


def train_position(generator_index: int) -> int:
    """Where a generator record lands in the train topic (the producer's own train/test split)."""
    is_test = np.random.default_rng(SEED + 1).random(generator_index) < TEST_FRACTION
    return int((~is_test).sum())


@dataclass
class Pipeline:
    env: dict[str, str]
    work: Path
    trainer: Component
    evaluator: Component
    producer: Component


@pytest.fixture(scope="module")
def pipeline(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    prefix = f"q{uuid.uuid4().hex[:8]}"
    env = {"STREAMTRAIN_BOOTSTRAP_SERVERS": broker.bootstrap,
           **{f"STREAMTRAIN_{t.upper()}_TOPIC": f"{prefix}.{t.replace('_', '-')}"
              for t in ("train", "test", "metrics", "model_events", "dead_letter")}}
    settings = common_settings(env)
    clients.create_topics(clients.admin(settings, "tests"), clients.topic_names(settings), partitions=1)
    work = tmp_path_factory.mktemp("live")
    logs = ARTIFACTS / "live-pipeline-logs"  # kept after the run
    trainer = Component("trainer", env, logs, model_dir=work / "models", checkpoint_dir=work / "ckpt",
                        batch_size=32, batch_max_wait_ms=100, learning_rate=0.001, publish_every_seconds=1,
                        checkpoint_every_seconds=1, metrics_every_seconds=1, drift_detector="adwin",
                        drift_reaction="boost-lr", replay_size=2000, replay_ratio=0.2,
                        summary_file=work / "trainer.json").start()
    evaluator = Component("evaluator", env, logs, model_dir=work / "models", report_dir=work / "reports",
                          poll_seconds=1, window=500, batch_size=64, batch_max_wait_ms=100, session_timeout_ms=6000,
                          metrics_every_seconds=0.5, plot_every_seconds=2,
                          summary_file=work / "evaluator.json").start()
    producer = Component("producer", env, logs, source="drift", count=COUNT, drift_points=DRIFT_AT,
                         drift_type="abrupt", rate=RATE, seed=SEED, test_fraction=TEST_FRACTION,
                         summary_file=work / "producer.json")
    try:
        trainer.wait_for(lambda s: True, 90, "trainer endpoint")
        evaluator.wait_for(lambda s: True, 90, "evaluator endpoint")
        producer.start()
        yield Pipeline(env, work, trainer, evaluator, producer)
    finally:
        for component in (producer, trainer, evaluator):
            component.stop()


@pytest.fixture(scope="module")
def chromium() -> None:
    reason = ensure_chromium()
    if reason:
        pytest.skip(reason)


def test_live_page_in_headless_chromium_shows_points_updates_and_drift(
        pipeline: Pipeline, chromium: None, artifacts: Path) -> None:
    url = f"http://127.0.0.1:{pipeline.evaluator.port}/"
    code, body = pipeline.evaluator.get("/")
    assert code == 200 and "<svg" in body
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", body), "the page must not load anything from elsewhere"
    browser = Browser(artifacts / "chromedriver.log")
    try:
        browser.get(url)
        points = "return Number(document.getElementById('quality').dataset.points)"
        first = browser.wait_for(points, 120, "accuracy points on the chart")
        updates = browser.js("return Number(document.body.dataset.updates || 0)")
        # The page refreshes itself (no reload here): more points and more refreshes appear.
        more = browser.wait_for(f"return {points.removeprefix('return ')} > {first} && "
                                f"Number(document.body.dataset.updates) > {updates} "
                                f"&& Number(document.getElementById('quality').dataset.points)", 60, "new points")
        assert more > first
        browser.wait_for("return document.querySelectorAll('#quality .drift-mark').length", 120,
                         "a drift mark on the accuracy chart")
        browser.wait_for("return document.querySelectorAll('#quality .version-mark').length >= 2", 30,
                         "model version marks")
        flow = browser.js("return Number(document.getElementById('flow').dataset.points)")
        assert flow > 0, "records/s and lag are drawn"
        table = browser.js("return document.getElementById('drifts').innerText")
        assert "adwin" in table and "boost-lr" in table
        summary = browser.js("return document.getElementById('summary').innerText")
        assert "drift events" in summary and "lag" in summary and "predictors serve" in summary
        serving = browser.js("return document.getElementById('serving').innerText")  # the gate is on by default
        assert "predictors serve" in serving and "gate accuracy on 500 records" in serving, serving
        time.sleep(2.5)  # one more refresh with everything on it, then the picture
        shot = browser.screenshot(artifacts / "live-page.png")
        assert shot.stat().st_size > 20_000
        origins = browser.js("return performance.getEntriesByType('resource').map(e => e.name)")
        assert origins and all(o.startswith(url) for o in origins), origins
        (artifacts / "history.json").write_text(pipeline.evaluator.get("/history")[1])
    finally:
        browser.close()


def test_drift_event_reaches_metrics_topic_manifest_prometheus_and_checkpoint(pipeline: Pipeline) -> None:
    expected = train_position(DRIFT_AT)
    status = pipeline.trainer.wait_for(lambda s: s.get("drift_events", 0) >= 1, 180, "a drift event")
    code, metrics = pipeline.trainer.get("/metrics")
    assert code == 200
    counted = re.search(r"^streamtrain_trainer_drift_events_total (\S+)$", metrics, re.M)
    assert counted and float(counted.group(1)) >= 1

    assert pipeline.producer.wait_exit(120) == 0
    produced = json.loads((pipeline.work / "producer.json").read_text())["produced"]
    pipeline.trainer.wait_for(lambda s: s["records_trained"] >= produced["train"], 120, "every train record")
    status = pipeline.trainer.status() or status
    assert pipeline.trainer.stop() == 0

    # Exactly one drift, detected within the stated delay after the change, on the metrics topic.
    messages = report.read_topic(config.load(ReportSettings, {
        k.removeprefix("STREAMTRAIN_").lower(): v for k, v in pipeline.env.items()} | {"idle_seconds": 2}))
    drifts = [m for m in messages if m.get("event") == "drift"]
    assert len(drifts) == 1, drifts
    event = drifts[0]
    assert expected < event["records_trained"] <= expected + DETECTION_DELAY, (expected, event)
    assert event["detector"] == "adwin" and event["reaction"] == "boost-lr"
    assert event["error_after"] > 0.3 > event["error_before"]
    assert event["replay_dropped"] > 0

    # In the newest manifest, and in the checkpoint (state that survives a restart).
    models = pipeline.work / "models"
    newest = model_store.version_numbers(models, "streamtrain")[-1]
    manifest = model_store.verify(models / "streamtrain" / str(newest))
    assert [e["id"] for e in manifest["drift_events"]] == [event["id"]]
    assert manifest["drift_events"][0]["records_trained"] == event["records_trained"]
    state = json.loads(sorted((pipeline.work / "ckpt").glob("ckpt-*"))[-1].joinpath("state.json").read_text())
    assert state["extra"]["adapt"]["events"][0]["id"] == event["id"]
    assert state["extra"]["adapt"]["detector"]["kind"] == "adwin"

    # A restarted trainer picks the drift state up from the checkpoint.
    pipeline.trainer.env["STREAMTRAIN_IDLE_EXIT_SECONDS"] = "2"
    pipeline.trainer.start()
    assert pipeline.trainer.wait_exit(120) == 0
    summary = json.loads((pipeline.work / "trainer.json").read_text())
    assert summary["drift_events"] == 1 and summary["last_drift"]["id"] == event["id"]
    assert summary["records_trained"] == produced["train"]

    # The evaluator learnt of it from the manifests.
    pipeline.evaluator.wait_for(lambda s: s.get("drift_events", 0) >= 1, 60, "the evaluator to know the drift")


def test_report_from_the_metrics_topic_and_from_the_csv(pipeline: Pipeline, artifacts: Path) -> None:
    from streamtrain import cli

    pipeline.trainer.wait_exit(180)  # the previous test stopped it; the report wants the whole run
    env = pipeline.env
    out = artifacts / "report.html"
    args = ["report", "--bootstrap-servers", env["STREAMTRAIN_BOOTSTRAP_SERVERS"],
            "--metrics-topic", env["STREAMTRAIN_METRICS_TOPIC"], "--output", str(out), "--idle-seconds", "2"]
    assert cli.main(args) == 0
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "drift events</th><td>1<" in page and "adwin" in page and "boost-lr" in page
    assert "<h2>Promotions and rejections (quality gate)</h2>" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    evaluator_csv = pipeline.work / "reports" / "accuracy.csv"
    pipeline.evaluator.wait_for(lambda s: evaluator_csv.exists(), 30, "the accuracy CSV")
    header = evaluator_csv.read_text().splitlines()[0]
    assert ",lag,drift_events,promoted_version,rejected_total,pinned,serving_version,verdicts" in header
    out_csv = artifacts / "report-from-csv.html"
    assert cli.main(["report", "--csv-path", str(evaluator_csv), "--output", str(out_csv)]) == 0
    assert out_csv.read_text().count("data:image/png;base64,") == 3



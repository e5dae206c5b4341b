"""Torn, corrupt, incompatible and code-carrying model versions: the evaluator refuses them and keeps serving.

A real trainer publishes versions; then, while an evaluator process serves the newest one, bad
versions appear on the volume (each by one rename of a complete directory, as a writer would):
a truncated model.keras, a flipped byte in the SavedModel variables, a missing manifest, a model of
another input width, one with two outputs, and one whose .keras holds a Lambda layer (Python code).
Each is refused with a reason and counted in streamtrain_evaluator_model_rejections_total{reason};
the served version stays; a good version after them is loaded. A version torn in place is refused
by a restarted evaluator, which falls back to the newest good one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import pytest

from streamtrain.models import RunningStandardization
from streamtrain.store import model_store
from tests.faults.helpers import log_messages, metric
from tests.support.processes import Component

pytestmark = pytest.mark.integration

MARKER_ENV = "STREAMTRAIN_TEST_LAMBDA_MARKER"


def _appear(root: Path, number: int, build: Callable[[Path], None]) -> None:
    """Build a version aside, then make it visible in one rename (readers never see it half-made)."""
    staging = root / f".tmp-test-{number}"
    build(staging)
    os.rename(staging, root / str(number))


def _copy_then(source: Path, damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(staging: Path) -> None:
        shutil.copytree(source, staging)
        damage(staging)
    return build


def _truncate(staging: Path) -> None:
    file = staging / model_store.KERAS_FILE
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_variables(staging: Path) -> None:
    candidates = sorted((staging / "variables").glob("variables.data-*")) or [staging / model_store.KERAS_FILE]
    data = bytearray(candidates[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    candidates[0].write_bytes(bytes(data))


def _drop_manifest(staging: Path) -> None:
    (staging / model_store.MANIFEST).unlink()


def _model(width: int, outputs: int = 1, with_lambda: bool = False) -> keras.Model:
    inputs = keras.Input(shape=(width,))
    x = RunningStandardization()(inputs)
    if with_lambda:
        # If this ever ran at load time, it would leave a marker file: it must not.
        # A Python lambda (stored as bytecode); self-contained, so it would work if Keras rebuilt it.
        x = keras.layers.Lambda(
            lambda t: (__import__("pathlib").Path(__import__("os").environ["STREAMTRAIN_TEST_LAMBDA_MARKER"])
                       .touch(), t)[1]  # type: ignore[func-returns-value]
            if __import__("os").environ.get("STREAMTRAIN_TEST_LAMBDA_MARKER") else t)(x)
    outputs_ = keras.layers.Dense(outputs, activation="sigmoid")(x)
    return keras.Model(inputs, outputs_)


def _publish(models: Path, number: int, model: keras.Model) -> None:
    model_store.publish(models, "streamtrain", model, number, {"records_trained": 0}, keep=1000, savedmodel=False)


def test_evaluator_refuses_bad_versions_and_keeps_serving(topics: dict[str, str], tmp_path: Path) -> None:
    logs, models = tmp_path / "logs", tmp_path / "models"
    root = model_store.model_root(models, "streamtrain")
    seed = Component("producer", topics, logs, source="susy", count=6_000, test_fraction=0.5, seed=5,
                     summary_file=tmp_path / "seed.json", http_port=0).start()
    assert seed.wait_exit(180) == 0, seed.log_tail()
    trainer = Component("trainer", topics, logs, model_dir=models, checkpoint_dir=tmp_path / "ckpt",
                        batch_size=128, idle_exit_seconds=3, publish_every_seconds=1,
                        summary_file=tmp_path / "trainer.json").start()
    assert trainer.wait_exit(300) == 0, trainer.log_tail()
    good = json.loads((tmp_path / "trainer.json").read_text())["last_version"]

    evaluator = Component("evaluator", topics, logs, model_dir=models, report_dir=tmp_path / "reports",
                          poll_seconds=1, window=200, batch_size=64, batch_max_wait_ms=100, session_timeout_ms=6000)
    # Longer than every wait below together (1,000 s at 300 records/s), stopped at the end: evaluation always has
    # records to go on with, however slowly a loaded machine gets through the waits.
    stream = Component("producer", topics, logs, source="susy", count=300_000, rate=300, test_fraction=0.5, seed=6,
                       http_port=0)
    try:
        evaluator.start()
        evaluator.wait_for(lambda s: s["model_version"] == good and s["records_evaluated"] > 0, 240,
                           f"serving version {good}")
        stream.start()
        marker = tmp_path / "lambda-ran"
        bad = {
            good + 1: "checksum", good + 2: "checksum", good + 3: "unreadable",
            good + 4: "incompatible", good + 5: "incompatible", good + 6: "unreadable",
        }
        _appear(root, good + 1, _copy_then(root / str(good), _truncate))
        _appear(root, good + 2, _copy_then(root / str(good), _flip_variables))
        _appear(root, good + 3, _copy_then(root / str(good), _drop_manifest))
        _publish(models, good + 4, _model(5))  # another input width
        _publish(models, good + 5, _model(18, outputs=2))  # another output shape
        os.environ[MARKER_ENV] = str(marker)
        try:
            _publish(models, good + 6, _model(18, with_lambda=True))  # Python code inside the .keras file
        finally:
            os.environ.pop(MARKER_ENV)
        marker.unlink(missing_ok=True)  # building and saving the model above ran the lambda here, in the test
        evaluator.env[MARKER_ENV] = str(marker)

        status = evaluator.wait_for(lambda s: {str(n) for n in bad} <= set(s["versions_rejected"]), 120,
                                    "every bad version refused")
        assert status["model_version"] == good
        before = status["records_evaluated"]
        evaluator.wait_for(lambda s: s["records_evaluated"] > before + 100, 120, "evaluation going on")
        _code, text = evaluator.get("/metrics")
        for reason in ("checksum", "unreadable", "incompatible"):
            expected = sum(1 for r in bad.values() if r == reason)
            assert metric(text, "streamtrain_evaluator_model_rejections_total", reason=reason) == expected, reason
        reasons = {line["version"]: line["reason"] for line in log_messages(evaluator.log_lines(), "refused")}
        assert "checksum mismatch in model.keras" in reasons[good + 1]
        assert "checksum mismatch in variables/" in reasons[good + 2] or "model.keras" in reasons[good + 2]
        assert "no manifest" in reasons[good + 3]
        assert "incompatible" in reasons[good + 4] and "5" in reasons[good + 4]
        assert "incompatible" in reasons[good + 5] and "output" in reasons[good + 5]
        assert "Lambda" in reasons[good + 6], reasons[good + 6]
        assert not marker.exists(), "loading a version ran code from the volume"

        # Recovery: a good version after the bad ones is loaded.
        model, _ = model_store.load(root / str(good), width=18)
        _publish(models, good + 7, model)
        evaluator.wait_for(lambda s: s["model_version"] == good + 7, 120, "the next good version")
        assert evaluator.stop(60) == 0

        # Torn in place: a restarted evaluator refuses it and serves the newest good version.
        _truncate(root / str(good + 7))
        evaluator.start()
        status = evaluator.wait_for(lambda s: s["model_version"] is not None and s["records_evaluated"] > 0, 240,
                                    "serving after a restart")
        assert status["model_version"] == good, status
        assert {str(n) for n in [*bad, good + 7]} <= set(status["versions_rejected"])
        assert not marker.exists()
    finally:
        stream.stop()
        evaluator.stop()

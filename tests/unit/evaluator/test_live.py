"""The serving decisions on the evaluator's live page (/history) and in its metrics rows: verdicts the judge
announced itself and ones read from the control topic, the pinned version, the version predictors serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamtrain.evaluator import live
from streamtrain.evaluator.main import Evaluator
from streamtrain.serving import control
from tests.support.gate import MODEL, KeptProducer, apply, gated_evaluator

REASON = "accuracy 0.410 (500 records) is 0.500 worse than the promoted 0.910 (tolerance 0.02)"


def history(evaluator: Evaluator) -> dict[str, Any]:
    code, kind, body = live.routes(evaluator)["/history"]()
    assert code == 200 and kind == "application/json"
    return json.loads(body)


def judge_promotes(evaluator: Evaluator, version: int) -> None:
    """The judge's own path: `version` scored on enough records (all right) is promoted and announced."""
    assert evaluator.judge is not None
    labels = np.array([0.0, 1.0] * 15, dtype=np.float32)
    evaluator.judge.observe(version, np.zeros((30, 4), np.float32), labels * 0.9 + 0.05, labels)


def score(evaluator: Evaluator, records: int = 10) -> None:
    labels = np.ones(records, dtype=np.float32)
    evaluator.totals.add(labels * 0.8, labels)


def metric_rows(evaluator: Evaluator) -> list[dict[str, Any]]:
    producer = evaluator.kafka
    assert isinstance(producer, KeptProducer)
    return producer.on(evaluator.s.metrics_topic)


@pytest.fixture
def evaluator(tmp_path: Path) -> Evaluator:
    return gated_evaluator(tmp_path)


def test_history_carries_the_verdicts_the_pin_and_the_served_version(evaluator: Evaluator) -> None:
    judge_promotes(evaluator, 1)  # announced by this judge (on the control topic: the kept producer has it)
    announced = [v for v in evaluator.kafka.on(evaluator.s.control_topic)]  # type: ignore[attr-defined]
    assert [(v["version"], v["decision"]) for v in announced] == [(1, "promoted")]
    apply(evaluator, control.verdict(MODEL, 2, "rejected", "accuracy", 0.41, 500, REASON, "other-replica"))
    data = history(evaluator)
    assert [(v["version"], v["decision"]) for v in data["verdicts"]] == [(1, "promoted"), (2, "rejected")]
    promoted, rejected = data["verdicts"]
    assert promoted["value"] == 1.0 and promoted["records"] == 30 and promoted["metric"] == "accuracy"
    assert "no version is promoted yet" in promoted["reason"] and promoted["ts_ms"] > 0
    assert rejected == {"ts_ms": rejected["ts_ms"], "version": 2, "decision": "rejected", "metric": "accuracy",
                        "value": 0.41, "records": 500, "reason": REASON}
    assert (data["promoted"], data["rejected"], data["pinned"]) == ([1], [2], None)
    assert (data["serving"], data["serving_by"], data["versions_in_store"]) == (1, "promoted", [1, 2, 3])
    assert data["gate"]["metric"] == "accuracy" and data["gate"]["min_records"] == 20

    apply(evaluator, control.verdict(MODEL, 3, "promoted", "accuracy", 0.93, 500, "fine"))
    assert (history(evaluator)["serving"], history(evaluator)["serving_by"]) == (3, "promoted")
    apply(evaluator, control.pin(MODEL, 1, "rollback", "ops"))  # an operator's rollback: served although older
    data = history(evaluator)
    assert (data["pinned"], data["serving"], data["serving_by"]) == (1, 1, "pinned")
    assert data["pin"]["action"] == "rollback" and data["pin"]["by"] == "ops"
    apply(evaluator, control.pin(MODEL, 7, "pin"))  # pinned, but not in the store: nothing servable
    data = history(evaluator)
    assert (data["pinned"], data["serving"], data["serving_by"]) == (7, None, "pinned")
    apply(evaluator, control.pin(MODEL, None, "unpin"))
    assert (history(evaluator)["serving"], history(evaluator)["pinned"]) == (3, None)


def test_metric_rows_carry_the_decisions_and_each_verdict_once(evaluator: Evaluator) -> None:
    apply(evaluator, control.verdict(MODEL, 1, "promoted", "accuracy", 0.9, 500, "first"))
    evaluator.report()  # nothing scored yet: no row is published, and the verdict waits for the first one
    assert metric_rows(evaluator) == []
    score(evaluator)
    apply(evaluator, control.verdict(MODEL, 2, "rejected", "accuracy", 0.41, 500, REASON))
    evaluator.report()
    evaluator.report()
    judge_promotes(evaluator, 3)
    apply(evaluator, control.pin(MODEL, 1, "pin"))
    evaluator.report()
    first, second, third = metric_rows(evaluator)
    assert [(v["version"], v["decision"], v["reason"]) for v in first["verdicts"]] == [
        (1, "promoted", "first"), (2, "rejected", REASON)]
    assert (first["promoted_version"], first["rejected_total"], first["pinned"], first["serving_version"]) == (
        1, 1, None, 1)
    assert second["verdicts"] == [] and second["serving_version"] == 1
    assert [(v["version"], v["decision"]) for v in third["verdicts"]] == [(3, "promoted")]
    assert (third["promoted_version"], third["pinned"], third["serving_version"]) == (3, 1, 1)
    assert evaluator.rows[-1]["verdicts"] == third["verdicts"]  # the CSV and /history rows are the same rows
    # A version judged again (a later verdict for the same key) is reported again.
    apply(evaluator, control.verdict(MODEL, 2, "promoted", "accuracy", 0.92, 500, "judged again"))
    evaluator.report()
    assert [(v["version"], v["decision"]) for v in metric_rows(evaluator)[-1]["verdicts"]] == [(2, "promoted")]


def test_without_the_gate_nothing_is_claimed(tmp_path: Path) -> None:
    evaluator = gated_evaluator(tmp_path, gate=False)
    assert evaluator.judge is None
    data = history(evaluator)
    assert (data["gate"], data["verdicts"], data["serving"], data["pinned"]) == (None, [], None, None)
    score(evaluator)
    evaluator.report()
    row = metric_rows(evaluator)[0]
    assert row["verdicts"] == [] and row["serving_version"] is None and row["rejected_total"] is None


def test_an_unreadable_control_topic_shows_as_such(evaluator: Evaluator) -> None:
    assert evaluator.judge is not None
    evaluator.judge.unavailable = "control topic streamtrain.control: no such topic"
    data = history(evaluator)
    assert data["gate"]["unavailable"].startswith("control topic") and data["serving"] is None

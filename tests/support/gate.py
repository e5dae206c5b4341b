"""An evaluator with its quality gate and no Kafka: a producer that keeps what it is given, and the judge's control
reader fed by hand (events applied to its decisions under its lock, as its reader thread applies them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamtrain.evaluator.main import Evaluator
from streamtrain.service.config import EvaluatorSettings
from streamtrain.service.runtime import StopFlag

MODEL = "m"


class KeptProducer:
    """Stands in for confluent_kafka.Producer: keeps every produced message as (topic, key, decoded JSON value)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, Any]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any) -> None:
        self.sent.append((topic, key.decode() if key else None, json.loads(value) if value else None))

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        return 0

    def on(self, topic: str) -> list[Any]:
        return [value for t, _key, value in self.sent if t == topic]


def gated_evaluator(tmp_path: Path, versions: tuple[int, ...] = (1, 2, 3), **overrides: Any) -> Evaluator:
    """An Evaluator (gate on unless overridden) whose model store holds `versions` (empty directories: the store's
    version list is all the serving decision needs)."""
    fields: dict[str, Any] = {"model_dir": tmp_path / "models", "report_dir": tmp_path / "reports",
                              "model_name": MODEL, "gate_min_records": 20, "gate_floor": 0.6, **overrides}
    settings = EvaluatorSettings(**fields)
    for v in versions:
        (settings.model_dir / MODEL / str(v)).mkdir(parents=True, exist_ok=True)
    return Evaluator(settings, StopFlag(), producer=KeptProducer())  # type: ignore[arg-type]


def apply(evaluator: Evaluator, *events: dict[str, Any]) -> None:
    """Control events as the judge's reader applies them from the control topic."""
    assert evaluator.judge is not None
    with evaluator.judge.control.lock:
        for event in events:
            evaluator.judge.control.decisions.apply(event)

"""The evaluator as the judge: each version it scores gets a verdict from the quality gate once it has been scored
on enough test records, announced on the control topic (serving/control.py) for the predictors to follow.

A version is judged on the first `--gate-min-records` test records scored with it, against the newest promoted
version's number as the control topic holds it. A version that already has a verdict (from another evaluator
replica, or from before a restart) is not judged again.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import numpy as np
from confluent_kafka import KafkaException, Producer
from prometheus_client import Counter, Gauge

from streamtrain.metrics import Window
from streamtrain.service.config import EvaluatorSettings
from streamtrain.serving import control, gate

log = logging.getLogger("streamtrain.evaluator")

VERDICTS = Counter("streamtrain_evaluator_verdicts_total", "Quality-gate verdicts announced", ["decision"])
PROMOTED = Gauge("streamtrain_evaluator_promoted_version", "Newest version the quality gate promoted")


class Judge:
    def __init__(self, settings: EvaluatorSettings, kafka: Producer) -> None:
        self.s = settings
        self.kafka = kafka
        self.rule = gate.Rule(settings.gate_metric, settings.gate_min_records, settings.gate_floor,
                              settings.gate_tolerance)
        self.control = control.ControlReader(settings, settings.model_name, "evaluator")
        self.by = socket.gethostname()
        self.version: int | None = None  # the version being gathered
        self.window = Window(settings.gate_min_records)
        self.verdicts: list[dict[str, Any]] = []
        self.unavailable: str | None = None

    def start(self) -> Judge:
        try:
            self.control.start()
        except (TimeoutError, KafkaException) as exc:  # scoring goes on; nothing is judged (and the error says why)
            self.unavailable = f"control topic {self.s.control_topic}: {exc}"
            log.error("quality gate off: the control topic cannot be read", extra={"error": self.unavailable})
            return self
        if not self.control.wait(30):
            log.warning("the control topic was not read to its end within 30 s", extra={"topic": self.s.control_topic})
        return self

    def stop(self) -> None:
        if self.unavailable is None:
            self.control.stop()

    def observe(self, version: int, scores: np.ndarray, labels: np.ndarray) -> None:
        """Take in scored test records of `version`; announce its verdict once there are enough."""
        if self.unavailable is not None:
            return
        if version != self.version:
            self.version, self.window = version, Window(self.s.gate_min_records)
        decisions = self.control.snapshot()
        if version in decisions.promoted or version in decisions.rejected or self.window.size == 0:
            return
        self.window.add(scores, labels)
        summary = self.window.summary()
        newest = decisions.newest_promoted()
        promoted = newest.get("value") if newest is not None and newest.get("metric") == self.rule.metric else None
        verdict = gate.judge(self.rule, summary, int(summary["records"] or 0), promoted)
        if verdict is None:
            return
        decision, reason = verdict
        event = control.verdict(self.s.model_name, version, decision, self.rule.metric, summary[self.rule.metric],
                                int(summary["records"] or 0), reason, self.by)
        control.send(self.kafka, self.s.control_topic, event)
        with self.control.lock:  # applied here at once: the next batch must not judge the version again
            self.control.decisions.apply(event)
        self.window = Window(0)  # judged: gather nothing more for this version
        self.verdicts.append(event)
        del self.verdicts[:-200]
        VERDICTS.labels(decision).inc()
        if decision == "promoted":
            PROMOTED.set(version)
        log.info(f"model version {decision}", extra={"version": version, "reason": reason})

    def status(self) -> dict[str, Any]:
        return {"gate": {"metric": self.rule.metric, "min_records": self.rule.min_records, "floor": self.rule.floor,
                         "tolerance": self.rule.tolerance, "unavailable": self.unavailable},
                "verdicts": [{k: v[k] for k in ("version", "decision", "value", "records", "reason")}
                             for v in self.verdicts[-20:]],
                **self.control.snapshot().summary()}

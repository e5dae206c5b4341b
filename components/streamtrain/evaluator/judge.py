"""The evaluator as the judge: each version it scores gets a verdict from the quality gate once it has been scored
on enough test records, announced on the control topic (serving/control.py) for the predictors to follow.

A version is judged on the first `--gate-min-records` test records scored with it, against the newest promoted
version scored here on the same records: a comparison on different records would let a lucky sample of the promoted
version (its accuracy on a few hundred records is uncertain by several points) reject every later version. Only
when the promoted version is no longer in the store does its recorded number stand in. A version that already has a
verdict (from another evaluator replica, or from before a restart) is not judged again.
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
from streamtrain.store import model_store
from streamtrain.store.loaded import LoadedModel, load_version
from streamtrain.tensors import as_tensor

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
        self.gathered: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (features, scores, labels)
        self.judged = False
        self.promoted: LoadedModel | None = None  # the newest promoted version, loaded to score the same records
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

    def observe(self, version: int, features: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        """Take in scored test records of `version`; announce its verdict once there are enough."""
        if self.unavailable is not None:
            return
        if version != self.version:
            self.version, self.gathered, self.judged = version, [], False
        decisions = self.control.snapshot()
        if version in decisions.promoted or version in decisions.rejected or self.judged:
            return
        self.gathered.append((features, scores, labels))
        if sum(part[2].size for part in self.gathered) < self.rule.min_records:
            return  # (joined only once there are enough: not on every batch)
        x, p, y = (np.concatenate(part) for part in zip(*self.gathered, strict=True))
        summary = summarize(p, y)
        verdict = gate.judge(self.rule, summary, int(y.size), self.promoted_value(decisions, x, y))
        if verdict is None:  # no value yet (AUC with one class so far): keep the newest records, bounded
            n = self.rule.min_records
            self.gathered = [(x[-n:], p[-n:], y[-n:])]
            return
        decision, reason = verdict
        event = control.verdict(self.s.model_name, version, decision, self.rule.metric, summary[self.rule.metric],
                                int(summary["records"] or 0), reason, self.by)
        control.send(self.kafka, self.s.control_topic, event)
        with self.control.lock:  # applied here at once: the next batch must not judge the version again
            self.control.decisions.apply(event)
        self.gathered, self.judged = [], True  # judged: gather nothing more for this version
        self.verdicts.append(event)
        del self.verdicts[:-200]
        VERDICTS.labels(decision).inc()
        if decision == "promoted":
            PROMOTED.set(version)
        log.info(f"model version {decision}", extra={"version": version, "reason": reason})

    def promoted_value(self, decisions: control.Decisions, x: np.ndarray, y: np.ndarray) -> float | None:
        """The newest promoted version's metric on the same records (x, y); its recorded value if it is gone."""
        newest = decisions.newest_promoted()
        if newest is None:
            return None
        number = int(newest["version"])
        if self.promoted is None or self.promoted.version != number:
            path = model_store.model_root(self.s.model_dir, self.s.model_name) / str(number)
            try:
                self.promoted = load_version(number, path, x.shape[1])
            except model_store.CorruptVersion:  # removed by retention, or unreadable: the number it was promoted with
                self.promoted = None
                return newest.get("value") if newest.get("metric") == self.rule.metric else None
        scores = np.asarray(self.promoted.predict(as_tensor(x)))
        return summarize(scores, y)[self.rule.metric]

    def status(self) -> dict[str, Any]:
        return {"gate": {"metric": self.rule.metric, "min_records": self.rule.min_records, "floor": self.rule.floor,
                         "tolerance": self.rule.tolerance, "unavailable": self.unavailable},
                "verdicts": [{k: v[k] for k in ("version", "decision", "value", "records", "reason")}
                             for v in self.verdicts[-20:]],
                **self.control.snapshot().summary()}


def summarize(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, log loss and AUC of scored records (Window's summary, over all of them)."""
    window = Window(max(int(labels.size), 1))
    window.add(scores, labels)
    return window.summary()

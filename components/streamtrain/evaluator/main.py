"""The evaluator: scores the newest model version on the test topic and reports how it does.

Data path: test topic -> BatchReader -> current model (hot-swapped by ModelWatcher) ->
sliding-window accuracy/loss/AUC -> metrics topic, /metrics, accuracy CSV + PNG. With the quality gate on, the
evaluator judges each version (judge.py), and its rows carry the serving decisions and the verdicts.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import Any

import numpy as np
from confluent_kafka import Producer, TopicPartition
from prometheus_client import Counter, Gauge

from streamtrain.evaluator import live, plot
from streamtrain.evaluator.judge import Judge
from streamtrain.evaluator.watcher import ModelWatcher
from streamtrain.kafka import clients
from streamtrain.kafka.batches import Batch, BatchReader, OffsetLost, unseen
from streamtrain.kafka.clients import ConsumerFactory
from streamtrain.kafka.tfio_reader import TfioBatchReader
from streamtrain.metrics import Totals, Window
from streamtrain.service import http, loop
from streamtrain.service.config import EvaluatorSettings
from streamtrain.service.runtime import StopFlag
from streamtrain.store import shipping
from streamtrain.tensors import as_tensor

log = logging.getLogger("streamtrain.evaluator")

EVALUATED = Counter("streamtrain_evaluator_records_total", "Test records evaluated")
ACCURACY = Gauge("streamtrain_evaluator_accuracy", "Accuracy over the sliding window")
LOSS = Gauge("streamtrain_evaluator_loss", "Log loss over the sliding window")
AUC = Gauge("streamtrain_evaluator_auc", "ROC AUC over the sliding window")
VERSION = Gauge("streamtrain_evaluator_model_version", "Model version being evaluated")
MODEL_AGE = Gauge("streamtrain_evaluator_model_staleness_seconds",
                  "Seconds between the newest record in the served model and now")
RATE = Gauge("streamtrain_evaluator_records_per_second", "Records evaluated per second, last interval")
REPEATS = Counter("streamtrain_evaluator_repeated_records_total",
                  "Records a group rebalance handed back after this process had scored them (skipped)")


class Evaluator:
    def __init__(self, settings: EvaluatorSettings, stop: StopFlag, producer: Producer | None = None,
                 consumer: ConsumerFactory = clients.consumer) -> None:
        """producer: for dead letters, metrics and model events; consumer(settings, client, group, **config): how
        the topic's consumer is made. Both default to the configured Kafka clients (tests pass their own)."""
        self.s = settings
        self.stop = stop
        self.window = Window(settings.window)
        self.totals = Totals()
        self.per_version: dict[int, Totals] = {}
        self.rows: list[dict[str, Any]] = []
        self.live = live.Live()  # versions, drift events and lag for the live page (/ and /history)
        self.health = http.Health()
        self.kafka = producer if producer is not None else clients.producer(settings, "evaluator")
        self.make_consumer = consumer
        self.dead = clients.DeadLetters(self.kafka, settings.dead_letter_topic, "evaluator")
        self.watcher = ModelWatcher(settings)
        self.judge = Judge(settings, self.kafka) if settings.gate else None
        self.next_offsets: dict[int, int] = {}
        self.dead_lettered = 0
        self.best_accuracy: float | None = None
        self._rate_mark = (time.monotonic(), 0)
        self.consumer: Any = None
        self.reader: BatchReader | TfioBatchReader | None = None
        self.next_report = self.next_plot = time.monotonic()

    def evaluate(self, batch: Batch) -> bool:
        """Score one batch with the current model; False if no usable model is there yet."""
        current = self.watcher.current
        if batch.width is not None:
            self.watcher.width = batch.width
        if current is None:
            return False
        d = batch.decoded
        if d.labels.size and d.features.shape[1] != current.width:
            self.watcher.refuse_current(f"takes {current.width} features, the test records have "
                                        f"{d.features.shape[1]}")
            return False
        batch, again = unseen(batch, self.next_offsets)  # a rebalance can hand back records scored already
        if again:
            REPEATS.inc(again)
            d = batch.decoded
        self.dead_lettered += batch.dead_letter(self.dead)
        if d.labels.size:
            scores = np.asarray(current.predict(as_tensor(d.features)))
            self.window.add(scores, d.labels)
            self.totals.add(scores, d.labels)
            self.per_version.setdefault(current.version, Totals()).add(scores, d.labels)
            if self.judge is not None:
                self.judge.observe(current.version, d.features, scores, d.labels)
            EVALUATED.inc(int(d.labels.size))
        if batch.offsets.size and batch.offsets[0] >= 0:  # the tensorflow-io backend has no offsets
            for partition, end in batch.ends().items():
                self.next_offsets[partition] = max(self.next_offsets.get(partition, 0), end)
        self.kafka.poll(0)
        return True

    def report(self, final: bool = False) -> None:
        now = time.monotonic()
        then, seen = self._rate_mark
        rate = (self.totals.records - seen) / max(now - then, 1e-9)
        self._rate_mark = (now, self.totals.records)
        window = self.window.summary()
        current = self.watcher.current
        published = bool(self.totals.records or final)  # the row goes to the metrics topic (and the CSV)
        row = {"ts_ms": int(time.time() * 1000), "records_evaluated": self.totals.records,
               "model_version": current.version if current else None, "accuracy": window["accuracy"],
               "loss": window["loss"], "auc": window["auc"], "records_per_second": round(rate, 1),
               **self.live.observe(current, live.consumer_lag(self.reader, self.next_offsets),
                                   *live.decisions_of(self), sent=published)}  # + serving decisions, new verdicts
        accuracy, loss, auc = window["accuracy"], window["loss"], window["auc"]
        if accuracy is not None and loss is not None:
            ACCURACY.set(accuracy)
            LOSS.set(loss)
            if auc is not None:
                AUC.set(auc)
            if int(window["records"] or 0) >= min(self.s.window, 200):
                self.best_accuracy = max(self.best_accuracy or 0.0, accuracy)
        RATE.set(rate)
        if current is not None:
            VERSION.set(current.version)
            newest = current.manifest.get("newest_record_ms")
            if newest:
                MODEL_AGE.set(max(time.time() - newest / 1000, 0))
        if published:
            self.rows.append(row)
            clients.send_json(self.kafka, self.s.metrics_topic, {"component": "evaluator", **row,
                                                                   "dead_lettered": self.dead_lettered},
                               key="evaluator")
        self.commit()

    def commit(self) -> None:
        # Committed offsets mark records done: their dead letters must be on the broker first.
        if self.next_offsets and self.reader is not None and self.dead.settle(2.0):
            self.reader.commit([TopicPartition(self.s.test_topic, p, o) for p, o in self.next_offsets.items()])

    def write_report(self) -> None:
        try:
            plot.write_csv(self.s.report_dir / "accuracy.csv", self.rows)
            plot.write_png(self.s.report_dir / "accuracy.png", self.rows)
        except OSError as exc:
            log.warning("could not write the accuracy report", extra={"error": str(exc)})

    def status(self) -> dict[str, Any]:
        current = self.watcher.current
        window = self.window.summary()
        return {
            "component": "evaluator",
            "records_evaluated": self.totals.records,
            "records_dead_lettered": self.dead_lettered,
            "model_version": current.version if current else None,
            "accuracy": window["accuracy"], "loss": window["loss"], "auc": window["auc"],
            "window_records": window["records"],
            "cumulative_accuracy": self.totals.accuracy,
            "best_accuracy": self.best_accuracy,
            "per_version": {v: {"records": t.records, "accuracy": t.accuracy, "loss": t.loss}
                            for v, t in self.per_version.items()},
            "versions_loaded": self.watcher.history,
            "versions_rejected": self.watcher.rejected,
            **self.live.status(),
            **(self.judge.status() if self.judge is not None else {}),
        }

    # --- the service loop's hooks (service/loop.py runs them) ----------------------------------------
    def endpoints(self) -> http.Endpoints:
        return http.Endpoints(live.routes(self))

    def open(self, cleanup: ExitStack) -> BatchReader | TfioBatchReader:
        receiver = shipping.receive(self.s, "evaluator")  # --model-source kafka: versions arrive over Kafka
        if receiver is not None:
            cleanup.callback(receiver.stop)
        self.watcher.start()
        cleanup.callback(self.watcher.stop)
        if self.judge is not None:
            self.judge.start()
            cleanup.callback(self.judge.stop)
        self.reader = loop.start_reader(self.s, self.s.test_topic, None, "evaluator", self.subscribe)
        self.next_report = self.next_plot = time.monotonic()
        return self.reader

    def subscribe(self) -> tuple[Any, None]:
        s = self.s
        self.consumer = self.make_consumer(s, "evaluator", s.group_id, **{
            "auto.offset.reset": s.start_offset, "session.timeout.ms": s.session_timeout_ms,
            "heartbeat.interval.ms": max(s.session_timeout_ms // 5, 500),
            "max.poll.interval.ms": max(s.session_timeout_ms + 1000, 30_000)})
        self.consumer.subscribe([s.test_topic])
        return self.consumer, None

    def handle(self, batch: Batch) -> bool:
        if self.evaluate(batch):
            return True
        self.watcher.changed.wait(0.2)  # no usable model yet: the loop holds the batch, the reader waits too
        self.watcher.changed.clear()
        return False

    def consumed(self) -> int:
        return self.totals.records + self.dead_lettered

    def tick(self, now: float) -> None:
        if now >= self.next_report:
            self.report()
            self.next_report = now + self.s.metrics_every_seconds
        if now >= self.next_plot:
            self.write_report()
            self.next_plot = now + self.s.plot_every_seconds

    def recover(self, lost: OffsetLost) -> BatchReader:
        raise lost  # a consumer group's offsets are the broker's: nothing of ours to restore

    def finish(self, run: loop.Run) -> dict[str, Any]:
        self.report(final=True)
        if self.reader is not None:
            self.reader.flush_commit()  # the reader thread has stopped: safe to commit from here
        self.write_report()
        self.kafka.flush(10)
        if self.consumer is not None:
            self.consumer.close()
        summary = {**self.status(), **run.summary(), "first_metric_seconds": run.first_batch_seconds,
                   "dead_letter_reasons": self.dead.by_reason}
        log.info("evaluator stopped", extra={k: summary[k] for k in ("records_evaluated", "model_version",
                                                                     "accuracy", "best_accuracy", "stopped_by")})
        return summary


def run(settings: EvaluatorSettings, stop: StopFlag | None = None) -> dict[str, Any]:
    stop = stop or StopFlag().install()
    return loop.run(Evaluator(settings, stop), settings, stop)

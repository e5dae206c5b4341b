"""The predictor: scores the input topic into the output topic, exactly once, with the version being served; and
answers TensorFlow-Serving-style REST requests with the same version.

Data path: input topic -> consume (this thread, the group's assignment) -> decode with the served version's width
-> predict -> output topic + dead letters + the input offsets, all in one Kafka transaction -> commit.

A batch is one transaction: its predictions, its dead letters and its input offsets are committed together or not
at all. If the transaction fails it is aborted and the consumer goes back to the batch's first offsets, so the
same records are scored again. Consumers of the output topic read with isolation.level=read_committed.
"""

from __future__ import annotations

import logging
import socket
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from streamtrain.kafka import clients
from streamtrain.kafka.batches import Batch, OffsetLost, consume, to_batch
from streamtrain.kafka.clients import ConsumerFactory
from streamtrain.predictor import output, rest
from streamtrain.predictor.batching import Batcher
from streamtrain.predictor.versions import Versions
from streamtrain.service import http, loop
from streamtrain.service.config import PredictorSettings
from streamtrain.service.runtime import StopFlag
from streamtrain.serving.control import ControlReader
from streamtrain.store import shipping
from streamtrain.tensors import as_tensor
from streamtrain.wire import F32_BLOCK_FORMAT, decode_unlabelled

log = logging.getLogger("streamtrain.predictor")

PREDICTED = Counter("streamtrain_predictor_records_total", "Input records scored and committed")
TRANSACTIONS = Counter("streamtrain_predictor_transactions_total", "Transactions", ["outcome"])
RATE = Gauge("streamtrain_predictor_records_per_second", "Input records scored per second, last interval")
LAG = Gauge("streamtrain_predictor_lag_records", "Input records on the broker not yet scored (this replica)")
TXN_TIMEOUT = 30.0  # seconds for one transactional call before it counts as failed


class TransactionsUnavailable(RuntimeError):
    """The broker refused or did not answer init_transactions: the predictor cannot run exactly once on it."""


class TransactionAborted(RuntimeError):
    """The predictor cannot go on transacting (fenced by a newer producer of its transactional id, or an abort that
    failed): the process ends, and the next replica of the id aborts what was left open."""


class Predictor:
    def __init__(self, settings: PredictorSettings, stop: StopFlag, producer: Producer | None = None,
                 consumer: ConsumerFactory = clients.consumer) -> None:
        """producer: a transactional producer (default: one with this replica's transactional.id);
        consumer(settings, client, group, **config): how the input topic's consumer is made."""
        self.s = settings
        self.stop = stop
        self.health = http.Health()
        self.transactional_id = settings.transactional_id or f"streamtrain-predictor-{socket.gethostname()}"
        self.kafka = producer if producer is not None else clients.producer(settings, "predictor", **{
            "transactional.id": self.transactional_id, "transaction.timeout.ms": settings.transaction_timeout_ms})
        self.dead = clients.DeadLetters(self.kafka, settings.dead_letter_topic, "predictor")
        self.control = ControlReader(settings, settings.model_name, "predictor")
        self.versions = Versions(settings, self.control)
        self.batcher = Batcher(settings.request_batch_size, settings.request_batch_wait_ms / 1000)
        self.input = Input(settings, self.versions, consumer)
        self.scored = 0
        self.dead_lettered = 0
        self.aborted = 0
        self.per_version: dict[int, int] = {}
        self.next_offsets: dict[int, int] = {}  # per input partition, the next offset to score (committed)
        self.lag: int | None = None
        self._rate_mark = (time.monotonic(), 0)
        self.next_report = time.monotonic()

    # --- one batch, one transaction -----------------------------------------------------------
    def predict(self, batch: Batch) -> bool:
        loaded = self.versions.serving()
        if loaded is None:
            return False
        if batch.width != loaded.width:  # decoded for a version of another width: decode again for this one
            batch = to_batch_again(batch, loaded.width)
        d = batch.decoded
        scores = np.asarray(loaded.predict(as_tensor(d.features))) if d.features.shape[0] else np.zeros(0)
        self.kafka.begin_transaction()
        try:
            dead = batch.dead_letter(self.dead)
            self.send_predictions(batch, scores, loaded.version)
            self.kafka.send_offsets_to_transaction(
                [TopicPartition(batch.topic, p, end) for p, end in batch.ends().items()],
                self.input.consumer.consumer_group_metadata(), TXN_TIMEOUT)
            self.kafka.commit_transaction(TXN_TIMEOUT)
        except KafkaException as exc:
            self.abort(batch, exc)
            return True
        TRANSACTIONS.labels("committed").inc()
        good = len(batch) - dead
        self.scored += good
        self.dead_lettered += dead
        self.per_version[loaded.version] = self.per_version.get(loaded.version, 0) + good
        self.next_offsets.update(batch.ends())
        PREDICTED.inc(good)
        return True

    def send_predictions(self, batch: Batch, scores: np.ndarray, version: int) -> None:
        d = batch.decoded
        topic, produce = self.s.output_topic, self.kafka.produce
        if batch.formats is None or F32_BLOCK_FORMAT not in batch.formats:  # one row a record: the batch at once
            records = d.good.tolist()
            values = output.encode_rows(self.s.output_format, scores, version, batch.topic, batch.partitions[d.good],
                                        batch.offsets[d.good], self.s.threshold)
            keys = batch.keys
            for i, value in zip(records, values, strict=True):
                produce(topic, value, keys[i])
            return
        records_, starts = np.unique(d.good, return_index=True)  # rows of one record (a block) are adjacent
        ends = np.append(starts[1:], len(d.good))
        for i, start, end in zip(records_.tolist(), starts.tolist(), ends.tolist(), strict=True):
            block = batch.formats[i] == F32_BLOCK_FORMAT
            origin = output.Origin(batch.topic, int(batch.partitions[i]), int(batch.offsets[i]))
            value = output.encode(self.s.output_format, scores[start:end], version, origin, self.s.threshold, block)
            produce(topic, value, batch.keys[i])

    def abort(self, batch: Batch, exc: KafkaException) -> None:
        """Abort the batch's transaction and go back to its first offsets; a fatal error (this producer was
        fenced by a newer one with the same transactional.id) ends the process."""
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and error.fatal():
            raise TransactionAborted(f"transactional id {self.transactional_id!r} can no longer commit (another "
                                     f"replica with the same id took over?): {clients.error_text(exc)}") from exc
        self.aborted += 1
        TRANSACTIONS.labels("aborted").inc()
        log.warning("transaction aborted; the batch will be scored again",
                    extra={"error": clients.error_text(exc), "records": len(batch)})
        try:
            self.kafka.abort_transaction(TXN_TIMEOUT)
        except KafkaException as again:
            raise TransactionAborted(f"could not abort the transaction: {clients.error_text(again)}") from again
        starts: dict[int, int] = {}
        for partition, start, _end in batch.ranges():
            starts[partition] = min(starts.get(partition, start), start)
        for partition, start in starts.items():
            self.input.consumer.seek(TopicPartition(batch.topic, partition, start))

    # --- reporting ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"component": "predictor", "records_predicted": self.scored, "records_dead_lettered":
                self.dead_lettered, "transactions_aborted": self.aborted, "transactional_id": self.transactional_id,
                "predictions_per_version": self.per_version, "lag": self.lag, **self.versions.status()}

    # --- the service loop's hooks (service/loop.py runs them) ----------------------------------
    def endpoints(self) -> http.Endpoints:
        """The TensorFlow-Serving-style REST API (predictor/rest.py) beside the probes and /metrics."""
        return http.Endpoints(app=rest.app(self.versions, self.batcher, self.s.max_request_instances),
                              max_body=self.s.max_request_bytes)

    def open(self, cleanup: ExitStack) -> Input:
        try:  # fences an older producer of this id; aborts what it left open
            self.kafka.init_transactions(TXN_TIMEOUT)
        except KafkaException as exc:
            raise TransactionsUnavailable(f"the broker did not start a transaction for transactional id "
                                          f"{self.transactional_id!r}: {clients.error_text(exc)}") from exc
        self.control.start()
        cleanup.callback(self.control.stop)
        if not self.control.wait(30):
            log.warning("the control topic was not read to its end within 30 s; serving decisions may lag",
                        extra={"topic": self.s.control_topic})
        receiver = shipping.receive(self.s, "predictor")  # --model-source kafka: versions arrive over Kafka
        if receiver is not None:
            cleanup.callback(receiver.stop)
        self.versions.start()
        cleanup.callback(self.versions.stop)
        return self.input

    def handle(self, batch: Batch) -> bool:
        return self.predict(batch)

    def consumed(self) -> int:
        return self.scored + self.dead_lettered

    def tick(self, now: float) -> None:
        self.health.ready = self.versions.serving() is not None  # the REST API answers only with a version
        if now >= self.next_report:
            then, seen = self._rate_mark
            rate = (self.scored - seen) / max(now - then, 1e-9)
            self._rate_mark = (now, self.scored)
            RATE.set(rate)
            self.lag = input_lag(self.input.consumer, self.s.input_topic, self.next_offsets)
            if self.lag is not None:
                LAG.set(self.lag)
            self.next_report = now + self.s.metrics_every_seconds

    def recover(self, lost: OffsetLost) -> Input:
        raise lost  # the group's offsets are the broker's: nothing of ours to restore

    def finish(self, run: loop.Run) -> dict[str, Any]:
        self.batcher.close()  # what is queued is answered; later requests get 503
        if self.input.consumer is not None:
            self.input.consumer.close()
        self.kafka.flush(10)
        summary = {**self.status(), **run.summary(), "dead_letter_reasons": self.dead.by_reason}
        log.info("predictor stopped", extra={k: summary[k] for k in ("records_predicted", "records_dead_lettered",
                                                                     "serving_version", "stopped_by")})
        return summary


class Input:
    """The input topic, read in the main thread: a batch never outlives the assignment it was fetched under.
    Nothing is read (the group is not even joined) before a version can score it."""

    def __init__(self, settings: PredictorSettings, versions: Versions, make_consumer: ConsumerFactory) -> None:
        self.s = settings
        self.versions = versions
        self.make_consumer = make_consumer
        self.consumer: Any = None

    def get(self, timeout: float) -> Batch | None:
        loaded = self.versions.serving()
        if loaded is None:
            self.versions.changed.wait(timeout)
            self.versions.changed.clear()
            return None
        if self.consumer is None:
            self.subscribe()
        messages = consume(self.consumer, self.s.batch_size, min(self.s.batch_max_wait_ms / 1000, timeout))
        return to_batch(messages, loaded.width, labelled=False) if messages else None

    def subscribe(self) -> None:
        s = self.s
        self.consumer = self.make_consumer(s, "predictor", s.group_id, **{
            "auto.offset.reset": s.start_offset, "isolation.level": "read_committed",
            "session.timeout.ms": s.session_timeout_ms, "heartbeat.interval.ms": max(s.session_timeout_ms // 5, 500),
            # Also how long a group coordinator may hold a rejoin: short, as this thread polls at least every
            # batch; a batch that overruns it is fenced from committing and scored again.
            "max.poll.interval.ms": max(s.session_timeout_ms + 1000, 10_000)})
        self.consumer.subscribe([s.input_topic])

    def stop(self) -> None:
        pass  # the consumer is closed by Predictor.finish, after the last transaction


def input_lag(consumer: Any, topic: str, next_offsets: dict[int, int]) -> int | None:
    """Input records on the broker not yet scored, over the assigned partitions this replica has scored from (None
    before any): the consumer's high watermarks from its last fetch responses (librdkafka's cache, no request) less
    the next offsets to score."""
    if consumer is None:
        return None
    behind = []
    for tp in consumer.assignment():
        if tp.topic == topic and tp.partition in next_offsets:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                behind.append(max(high - next_offsets[tp.partition], 0))
    return sum(behind) if behind else None


def to_batch_again(batch: Batch, width: int) -> Batch:
    """The batch decoded for another width (a version of another input width was swapped in)."""
    return replace(batch, decoded=decode_unlabelled(batch.values, width, batch.formats), width=width)


def run(settings: PredictorSettings, stop: StopFlag | None = None) -> dict[str, Any]:
    stop = stop or StopFlag().install()
    return loop.run(Predictor(settings, stop), settings, stop)

"""The predictor: scores the input topic into the output topic, exactly once, with the version being served; and
answers TensorFlow-Serving-style REST requests with the same version.

Data path: input topic -> consume (this thread, the group's assignment) -> decode with the served version's width
-> predict -> encode -> the transaction stage (predictor/transactions.py, a thread of its own): output topic + dead
letters + the input offsets, all in one Kafka transaction -> commit.

A batch is one transaction: its predictions, its dead letters and its input offsets are committed together or not
at all. While one batch is in its transaction the next is read and scored. If a transaction fails it is aborted,
what was scored after it is dropped, and the consumer goes back to the batch's first offsets, so the same records
are scored again. Consumers of the output topic read with isolation.level=read_committed.
"""

from __future__ import annotations

import logging
import socket
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import numpy as np
from confluent_kafka import Producer, TopicPartition
from prometheus_client import Counter, Gauge

from streamtrain.kafka import clients
from streamtrain.kafka.batches import Batch, OffsetLost, consume, to_batch
from streamtrain.kafka.clients import ConsumerFactory
from streamtrain.predictor import output, rest
from streamtrain.predictor.batching import Batcher
from streamtrain.predictor.transactions import Committed, Scored, Transactions
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
RATE = Gauge("streamtrain_predictor_records_per_second", "Input records scored per second, last interval")
LAG = Gauge("streamtrain_predictor_lag_records", "Input records on the broker not yet scored (this replica)")


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
        self.transactions = Transactions(self.kafka, self.dead, settings.output_topic, self.transactional_id,
                                         self.committed)
        self.control = ControlReader(settings, settings.model_name, "predictor")
        self.versions = Versions(settings, self.control)
        self.batcher = Batcher(settings.request_batch_size, settings.request_batch_wait_ms / 1000)
        self.input = Input(settings, self.versions, consumer, self.transactions)
        self.scored = 0  # these four are updated by the transaction stage's thread, after each commit
        self.dead_lettered = 0
        self.per_version: dict[int, int] = {}
        self.next_offsets: dict[int, int] = {}  # per input partition, the next offset to score (committed)
        self.lag: int | None = None
        self._rate_mark = (time.monotonic(), 0)
        self.next_report = time.monotonic()

    # --- one batch: score it here, commit it in the transaction stage -------------------------
    def predict(self, batch: Batch) -> bool:
        if (rewind := self.transactions.rewind()) is not None:  # a transaction aborted: this batch came after it
            self.input.seek(*rewind)
            return True
        loaded = self.versions.serving()
        if loaded is None:
            return False
        if batch.width != loaded.width:  # decoded for a version of another width: decode again for this one
            batch = to_batch_again(batch, loaded.width)
        d = batch.decoded
        scores = np.asarray(loaded.predict(as_tensor(d.features))) if d.features.shape[0] else np.zeros(0)
        values, keys = self.encode(batch, scores, loaded.version)
        self.transactions.submit(Scored(batch, values, keys, loaded.version,
                                        self.input.consumer.consumer_group_metadata(), self.input.epoch))
        return True

    def encode(self, batch: Batch, scores: np.ndarray, version: int) -> tuple[list[bytes], list[bytes | None]]:
        """The output values of the batch's good records, and their keys."""
        d = batch.decoded
        if batch.formats is None or F32_BLOCK_FORMAT not in batch.formats:  # one row a record: the batch at once
            values = output.encode_rows(self.s.output_format, scores, version, batch.topic, batch.partitions[d.good],
                                        batch.offsets[d.good], self.s.threshold)
            return values, [batch.keys[i] for i in d.good.tolist()]
        records, starts = np.unique(d.good, return_index=True)  # rows of one record (a block) are adjacent
        ends = np.append(starts[1:], len(d.good))
        values, keys = [], []
        for i, start, end in zip(records.tolist(), starts.tolist(), ends.tolist(), strict=True):
            block = batch.formats[i] == F32_BLOCK_FORMAT
            origin = output.Origin(batch.topic, int(batch.partitions[i]), int(batch.offsets[i]))
            values.append(output.encode(self.s.output_format, scores[start:end], version, origin, self.s.threshold,
                                        block))
            keys.append(batch.keys[i])
        return values, keys

    def committed(self, done: Committed) -> None:
        """Called by the transaction stage after each commit."""
        self.scored += done.good
        self.dead_lettered += done.dead
        self.per_version[done.version] = self.per_version.get(done.version, 0) + done.good
        self.next_offsets.update(done.ends)
        PREDICTED.inc(done.good)

    # --- reporting ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"component": "predictor", "records_predicted": self.scored, "records_dead_lettered":
                self.dead_lettered, "transactions_aborted": self.transactions.aborted,
                "transactional_id": self.transactional_id, "predictions_per_version": dict(self.per_version),
                "lag": self.lag, **self.versions.status()}

    # --- the service loop's hooks (service/loop.py runs them) ----------------------------------
    def endpoints(self) -> http.Endpoints:
        """The TensorFlow-Serving-style REST API (predictor/rest.py) beside the probes and /metrics."""
        return http.Endpoints(app=rest.app(self.versions, self.batcher, self.s.max_request_instances),
                              max_body=self.s.max_request_bytes)

    def open(self, cleanup: ExitStack) -> Input:
        self.transactions.start()  # fences an older producer of this id; aborts what it left open
        cleanup.callback(self.transactions.stop)
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
        self.transactions.raise_failure()
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
        self.transactions.drain()
        self.transactions.stop()
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

    def __init__(self, settings: PredictorSettings, versions: Versions, make_consumer: ConsumerFactory,
                 transactions: Transactions) -> None:
        self.s = settings
        self.versions = versions
        self.make_consumer = make_consumer
        self.transactions = transactions
        self.consumer: Any = None
        self.epoch = 0  # bumped at each rewind: what was scored before it is dropped by the transaction stage

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
        self.consumer.subscribe([s.input_topic], on_revoke=self.revoked)

    def revoked(self, _consumer: Any, _partitions: list[TopicPartition]) -> None:
        """Before the partitions go: every scored batch is committed (or aborted: the next owner starts from the
        group's offsets, so there is nothing to seek back to)."""
        self.transactions.drain()
        if (rewind := self.transactions.rewind()) is not None:
            self.epoch = rewind[1]

    def seek(self, positions: dict[int, int], epoch: int) -> None:
        """Back to the first offsets of an aborted batch, on the partitions still assigned."""
        assigned = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.s.input_topic}
        for partition, offset in positions.items():
            if partition in assigned:
                self.consumer.seek(TopicPartition(self.s.input_topic, partition, offset))
        self.epoch = epoch

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

"""The producer: a source streamed into the train and test topics at a chosen rate.

Records go round-robin over each topic's partitions (keys carry labels, so key hashing would put
all of one class on one partition). The final count is what the broker acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from streamtrain.kafka import clients
from streamtrain.producer import sources
from streamtrain.service import http
from streamtrain.service.config import ProducerSettings
from streamtrain.service.logs import is_terminal
from streamtrain.service.runtime import StopFlag, write_summary
from streamtrain.wire import F32, F32_BLOCK_FORMAT, F32_FORMAT, FORMATS, block_label, block_rows

log = logging.getLogger("streamtrain.producer")

RECORDS = Counter("streamtrain_producer_records_total", "Records acknowledged by the broker", ["topic"])
ERRORS = Counter("streamtrain_producer_delivery_errors_total", "Records the broker did not acknowledge")
RATE = Gauge("streamtrain_producer_records_per_second", "Acknowledged records per second, last interval")


class Deliveries:
    """Delivery-report callback: counts what the broker acknowledged (cheap: no metric calls per record)."""

    def __init__(self, topics: list[str]) -> None:
        self.acked = dict.fromkeys(topics, 0)
        self.failed = 0
        self.first_error: str | None = None
        self._exported = dict.fromkeys(topics, 0)
        self._exported_failed = 0

    def export(self) -> None:
        """Bring the Prometheus counters up to date."""
        for topic, count in self.acked.items():
            RECORDS.labels(topic).inc(count - self._exported[topic])
            self._exported[topic] = count
        ERRORS.inc(self.failed - self._exported_failed)
        self._exported_failed = self.failed

    def __call__(self, err: Any, msg: Any, rows: int = 1) -> None:
        if err is None:
            self.acked[msg.topic()] += rows
        else:
            self.failed += rows
            self.first_error = self.first_error or str(err)

    def of_block(self, rows: int) -> Callable[[Any, Any], None]:
        """The callback of an f32-block record: it counts its rows."""
        return lambda err, msg: self(err, msg, rows)

    @property
    def total(self) -> int:
        return sum(self.acked.values())


def run(settings: ProducerSettings, stop: StopFlag | None = None) -> dict[str, Any]:
    stop = stop or StopFlag().install()
    kafka = clients.producer(settings, "producer", **{"compression.type": settings.compression})
    topics = [settings.train_topic, settings.test_topic]
    partitions = {t: clients.partitions_of(kafka, t) for t in topics}
    deliveries = Deliveries(topics)
    dead = clients.DeadLetters(kafka, settings.dead_letter_topic, "producer")
    health = http.Health()
    status: dict[str, Any] = {"component": "producer"}
    if settings.http_port:
        http.serve(settings.http_host, settings.http_port, health,
                   lambda: {**status, "produced": {"train": deliveries.acked[settings.train_topic],
                                                   "test": deliveries.acked[settings.test_topic]},
                            "dead_lettered": dead.sent, "failed": deliveries.failed})
    health.ready = True
    rng = np.random.default_rng(settings.seed + 1)  # the split has its own stream of randomness
    limit = settings.count or None
    sent = 0
    started = time.monotonic()
    progress = _Progress(limit, settings.log_every_seconds)
    next_partition = dict.fromkeys(topics, 0)
    for chunk in sources.from_settings(settings):
        for bad in chunk.bad:
            dead.send(None, bad.raw, bad.kind, f"{bad.detail} (at {bad.where})")
        keys, values = chunk.keys, chunk.values
        formats = chunk.formats or [None] * len(values)
        if limit is not None:
            keys, values, formats = keys[: limit - sent], values[: limit - sent], formats[: limit - sent]
        is_test = rng.random(len(values)) < settings.test_fraction
        for start in range(0, len(values), _slice(settings.rate)):
            end = min(start + _slice(settings.rate), len(values))
            if settings.wire_format == "f32-block":
                _produce_blocks(kafka, topics, range(start, end), keys, values, formats, is_test, partitions,
                                next_partition, deliveries, settings.block_rows)
            for i in range(start, end):
                if settings.wire_format == "f32-block" and formats[i] == F32_FORMAT:
                    continue  # sent in a block
                topic = topics[int(is_test[i])]
                parts = partitions[topic]
                partition = parts[next_partition[topic] % len(parts)]
                next_partition[topic] += 1
                _produce(kafka, topic, keys[i], values[i], partition, deliveries, HEADERS.get(formats[i]))
            sent += end - start
            kafka.poll(0)
            health.beat()
            if settings.rate:
                ahead = sent / settings.rate - (time.monotonic() - started)
                if ahead > 0:
                    stop.wait(ahead)
            progress.update(sent, deliveries.total)
            deliveries.export()
            if stop:
                break
        if stop or (limit is not None and sent >= limit):
            break
    log.info("flushing", extra={"queued": len(kafka)})
    remaining = kafka.flush(60)
    elapsed = time.monotonic() - started
    progress.close()
    deliveries.export()
    summary = {
        "component": "producer",
        "source": settings.source,
        "sent": sent,
        "produced": {"train": deliveries.acked[settings.train_topic], "test": deliveries.acked[settings.test_topic]},
        "acknowledged": deliveries.total,
        "failed": deliveries.failed + remaining,
        "dead_lettered": dead.sent,
        "dead_letter_reasons": dead.by_reason,
        "seconds": round(elapsed, 3),
        "records_per_second": round(deliveries.total / elapsed, 1) if elapsed else None,
        "stopped_by": stop.signal_name,
    }
    if deliveries.failed:
        log.error("some records were not acknowledged", extra={"failed": deliveries.failed,
                                                                "first_error": deliveries.first_error})
    log.info("producer done", extra=summary)
    write_summary(settings.summary_file, summary)
    return summary


def _slice(rate: float) -> int:
    """Records between rate checks: about 20 checks a second when rate-limited."""
    return max(1, min(sources.CHUNK, int(rate / 20))) if rate else sources.CHUNK


# Records in a format other than CSV say so in a header (CSV records carry none, as the tutorial's).
HEADERS: dict[bytes | None, list[tuple[str, bytes]]] = {
    name: headers for name, wire in FORMATS.items() if (headers := wire.headers()) is not None}


def _produce_blocks(kafka: Any, topics: list[str], span: range, keys: list[bytes], values: list[bytes],
                    formats: list[bytes | None], is_test: np.ndarray, partitions: dict[str, list[int]],
                    next_partition: dict[str, int], deliveries: Deliveries, rows: int) -> None:
    """The f32 rows of `span` as f32-block records of up to `rows` rows, per topic in stream order.

    Rows that are not f32 (a CSV row that did not parse) are left to the caller, which sends them
    one by one so that consumers dead-letter each with its reason.
    """
    for test, topic in enumerate(topics):
        chosen = [i for i in span if formats[i] == F32_FORMAT and bool(is_test[i]) == bool(test)]
        if not chosen:
            continue
        step = block_rows(rows, len(values[chosen[0]]) // F32.itemsize)
        for start in range(0, len(chosen), step):
            group = chosen[start:start + step]
            key = b"".join(block_label(keys[i]) for i in group)
            value = b"".join(values[i] for i in group)
            parts = partitions[topic]
            partition = parts[next_partition[topic] % len(parts)]
            next_partition[topic] += 1
            _produce(kafka, topic, key, value, partition, deliveries.of_block(len(group)), HEADERS[F32_BLOCK_FORMAT])


def _produce(kafka: Any, topic: str, key: bytes, value: bytes, partition: int,
             on_delivery: Callable[[Any, Any], None],
             headers: list[tuple[str, bytes]] | None = None) -> None:
    while True:
        try:
            kafka.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery, headers=headers)
            return
        except BufferError:  # local queue full: let deliveries drain, then retry
            kafka.poll(0.05)


class _Progress:
    """A rich progress bar on a terminal; a log line every few seconds otherwise."""

    def __init__(self, total: int | None, every: float) -> None:
        self.every = every
        self.last = time.monotonic()
        self.last_acked = 0
        self.bar: Any = None
        if is_terminal():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("producing", total=total)

    def update(self, sent: int, acked: int) -> None:
        now = time.monotonic()
        if self.bar is not None:
            self.bar.update(self.task, completed=sent)
        elif now - self.last >= self.every:
            rate = (acked - self.last_acked) / (now - self.last)
            RATE.set(rate)
            log.info("progress", extra={"sent": sent, "acknowledged": acked, "records_per_second": round(rate)})
            self.last, self.last_acked = now, acked

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()

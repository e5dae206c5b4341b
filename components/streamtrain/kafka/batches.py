"""Micro-batches from Kafka: consume up to N records or wait at most T, decode, hand over.

A reader thread keeps the next batch ready (consume + decode overlap with training); the queue
is bounded, so memory stays flat and nothing runs far ahead of training. Offsets travel with each
batch, so what is checkpointed is what was trained, never merely what was fetched.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from itertools import compress
from typing import Protocol

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streamtrain.kafka.clients import DeadLetters
from streamtrain.wire import Decoded, decode_batch, decode_unlabelled, record_format

log = logging.getLogger(__name__)


class OffsetLost(RuntimeError):
    """The broker no longer has the offsets we were reading (for example it lost its data)."""


class Guard(Protocol):
    """Checks that the log is still the one the offsets belong to (kafka/continuity.py's LogGuard)."""

    def verify(self, holding: bool, stop: threading.Event) -> None: ...


class WidthChanged(ValueError):
    pass


@dataclass
class Batch:
    topic: str
    partitions: np.ndarray  # int32 per record
    offsets: np.ndarray  # int64 per record
    timestamps: np.ndarray  # int64 ms per record (produce time)
    keys: list[bytes | None]
    values: list[bytes | None]
    decoded: Decoded
    width: int | None
    fetched_at: float
    formats: list[bytes | None] | None = None  # per record, its streamtrain.format header (None: all CSV)

    def __len__(self) -> int:
        return len(self.values)

    def dead_letter(self, dead: DeadLetters) -> int:
        """Send the batch's bad records to the dead-letter topic with their reasons and origins; how many."""
        for bad in self.decoded.bad:
            i = bad.index
            dead.send(self.keys[i], self.values[i], bad.kind, bad.detail, self.topic, int(self.partitions[i]),
                      int(self.offsets[i]), self.formats[i] if self.formats else None)
        return len(self.decoded.bad)

    def ends(self) -> dict[int, int]:
        """Per partition, the offset after the batch's last record (a partition can have several runs: a
        transactional topic leaves gaps where its commit markers are)."""
        ends: dict[int, int] = {}
        for partition, _start, end in self.ranges():
            ends[partition] = max(ends.get(partition, 0), end)
        return ends

    def ranges(self) -> list[tuple[int, int, int]]:
        """(partition, start, end) runs of consecutive offsets in this batch."""
        runs: list[tuple[int, int, int]] = []
        for partition in np.unique(self.partitions):
            offs = np.sort(self.offsets[self.partitions == partition])
            breaks = np.flatnonzero(np.diff(offs) != 1) + 1
            for run in np.split(offs, breaks):
                runs.append((int(partition), int(run[0]), int(run[-1]) + 1))
        return runs


def consume(consumer: Consumer, size: int, max_wait: float) -> list[Message]:
    """Up to `size` records, waiting at most `max_wait` seconds for the batch to fill."""
    messages: list[Message] = []
    deadline = time.monotonic() + max_wait
    while len(messages) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for msg in consumer.consume(num_messages=size - len(messages), timeout=remaining):
            error = msg.error()
            if error is None:
                messages.append(msg)
            elif error.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
                raise OffsetLost(f"{msg.topic()}[{msg.partition()}]: {error.str()}")
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": error.str(), "retriable": error.retriable()})
        if messages and len(messages) >= size:
            break
    return messages


def unseen(batch: Batch, next_offsets: dict[int, int]) -> tuple[Batch, int]:
    """The batch without records below next_offsets[partition] (handled already), and how many were dropped.

    A consumer-group rebalance (a session timeout during a broker stall, say) resumes partitions at
    the last committed offset, which may lag what this process already handled.
    """
    if not next_offsets or not batch.offsets.size or batch.offsets[0] < 0:  # tensorflow-io batches: no offsets
        return batch, 0
    floor = np.fromiter((next_offsets.get(int(p), 0) for p in batch.partitions), np.int64, len(batch))
    keep = batch.offsets >= floor
    dropped = int(len(batch) - keep.sum())
    if not dropped:
        return batch, 0
    d = batch.decoded
    new_index = np.cumsum(keep) - 1
    good = d.good[keep[d.good]]
    decoded = Decoded(d.features[keep[d.good]], d.labels[keep[d.good]], new_index[good],
                      [b.at(int(new_index[b.index])) for b in d.bad if keep[b.index]])
    flags = keep.tolist()
    formats = list(compress(batch.formats, flags)) if batch.formats is not None else None
    return replace(batch, partitions=batch.partitions[keep], offsets=batch.offsets[keep],
                   timestamps=batch.timestamps[keep], keys=list(compress(batch.keys, flags)),
                   values=list(compress(batch.values, flags)), decoded=decoded, formats=formats), dropped


def to_batch(messages: list[Message], width: int | None, labelled: bool = True) -> Batch:
    """labelled=False: the keys are opaque ids, not labels (the predictor's input); the width must be known."""
    keys = [m.key() for m in messages]
    values = [m.value() for m in messages]
    headers = [record_format(m.headers()) for m in messages]  # None for plain CSV records (no header)
    formats = headers if any(headers) else None
    if labelled:
        decoded, width = decode_batch(keys, values, width, formats)
    else:
        assert width is not None, "unlabelled records need the model's width"
        decoded = decode_unlabelled(values, width, formats)
    return Batch(
        topic=(messages[0].topic() or "") if messages else "",
        partitions=np.fromiter((m.partition() for m in messages), np.int32, len(messages)),
        offsets=np.fromiter((m.offset() for m in messages), np.int64, len(messages)),
        timestamps=np.fromiter((m.timestamp()[1] for m in messages), np.int64, len(messages)),
        keys=keys, values=values, decoded=decoded, width=width, fetched_at=time.time(), formats=formats,
    )


def take(handover: queue.Queue[Batch | BaseException], timeout: float) -> Batch | None:
    """The next batch from a reader thread, None on timeout; re-raises what the reader failed with."""
    try:
        item = handover.get(timeout=timeout)
    except queue.Empty:
        return None
    if isinstance(item, BaseException):
        raise item
    return item


FIRST_RECORDS = 64
WATERMARKS_SECONDS = 0.1


class BatchReader:
    """Consumes and decodes in a background thread; `get()` returns the next Batch or None on timeout."""

    def __init__(self, consumer: Consumer, size: int, max_wait: float, width: int | None, prefetch: int = 2,
                 guard: Guard | None = None) -> None:
        self.consumer = consumer
        self.guard = guard  # runs here, in the thread that owns the consumer, before a batch is handed over
        self.size = size
        self.max_wait = max_wait
        self.width = width
        self._queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-reader", daemon=True)
        self._commit_lock = threading.Lock()
        self._pending_commit: list[TopicPartition] | None = None
        # Per partition, from the last fetch responses (librdkafka's cache: no request), refreshed every
        # WATERMARKS_SECONDS: the trainer sizes its steps by the backlog they show (trainer/pace.py).
        self.high_watermarks: dict[int, int] = {}
        self._watermarks_at = 0.0
        # Rows per Kafka record, learnt from each batch: > 1 on topics of f32-block records, where fewer
        # records make a batch. Unknown at first: the first batch takes at most FIRST_RECORDS records (not
        # `size` blocks), enough for the width to be the majority's if a malformed row comes first.
        self.rows_per_record: float | None = None

    def start(self) -> BatchReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.flush_commit()
                want = min(self.size, FIRST_RECORDS) if self.rows_per_record is None else \
                    max(1, round(self.size / self.rows_per_record))
                messages = consume(self.consumer, want, self.max_wait)
                self._refresh_watermarks()  # after the fetch, so even the first batch has its topic's end
                if self.guard is not None:
                    self.guard.verify(bool(messages), self._stop)  # raises OffsetLost: the batch is dropped
                if not messages:
                    continue
                batch = to_batch(messages, self.width)
                self.width = batch.width
                if batch.decoded.labels.size:  # (a batch of bad records tells nothing)
                    self.rows_per_record = max(1.0, batch.decoded.labels.size / len(messages))
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the main thread, which decides
            self._queue.put(exc)

    def get(self, timeout: float) -> Batch | None:
        return take(self._queue, timeout)

    def ready(self) -> bool:
        """Whether a batch (or an error) waits to be taken."""
        return not self._queue.empty()

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Ask for an offset commit; the reader thread sends it, as it owns the consumer.

        (A commit from another thread while consume() waits has been seen to block on librdkafka.)
        """
        with self._commit_lock:
            self._pending_commit = offsets

    def _refresh_watermarks(self) -> None:
        now = time.monotonic()
        if self.high_watermarks and now - self._watermarks_at < WATERMARKS_SECONDS:
            return
        self._watermarks_at = now
        marks = {}
        for tp in self.consumer.assignment():
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                marks[tp.partition] = high
        self.high_watermarks = marks

    def flush_commit(self) -> None:
        with self._commit_lock:
            offsets, self._pending_commit = self._pending_commit, None
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except Exception as exc:  # lag monitoring only: never let it stop the stream
                log.debug("offset commit skipped", extra={"error": str(exc)})

    def stop(self) -> None:
        """Stop reading; batches fetched but not yet handed over are dropped (never checkpointed)."""
        self._stop.set()
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.flush_commit()

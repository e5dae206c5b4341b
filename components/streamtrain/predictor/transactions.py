"""The predictor's second stage: one Kafka transaction a scored batch (its predictions, its dead letters and its
input offsets), run in a thread of its own while the main thread consumes, decodes and scores the next batch.

Why a thread: a transaction waits on the broker twice (the offsets, then the commit), about 2 ms a batch on a
local broker, and the main thread had nothing to do meanwhile. The wait releases the GIL, so the next batch is
scored in that time.

What keeps it exactly once:
- at most one batch waits while one is in its transaction, so nothing runs far ahead of what is committed;
- each batch carries the consumer's group metadata from when it was fetched: a broker that fences stale
  generations (Kafka) refuses its offsets after a rebalance, and the transaction aborts;
- the consumer's on_revoke drains this stage before the partitions go (`drain`), so a batch never outlives the
  assignment it was fetched under;
- when a transaction aborts, every batch submitted after it is dropped unsent, and the main thread seeks back to
  the aborted batch's first offsets (`rewind`) before it reads on: the same records are scored again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import Counter

from streamtrain.kafka import clients
from streamtrain.kafka.batches import Batch

log = logging.getLogger("streamtrain.predictor")

TRANSACTIONS = Counter("streamtrain_predictor_transactions_total", "Transactions", ["outcome"])
TXN_TIMEOUT = 30.0  # seconds for one transactional call before it counts as failed


class TransactionsUnavailable(RuntimeError):
    """The broker refused or did not answer init_transactions: the predictor cannot run exactly once on it."""


class TransactionAborted(RuntimeError):
    """The predictor cannot go on transacting (fenced by a newer producer of its transactional id, or an abort that
    failed): the process ends, and the next replica of the id aborts what was left open."""


@dataclass(frozen=True)
class Scored:
    """A batch scored by the main thread, ready for its transaction."""

    batch: Batch
    values: list[bytes]  # the predictions' output values, one per record in `keys`
    keys: list[bytes | None]
    version: int
    group: Any  # the consumer's ConsumerGroupMetadata when the batch was fetched
    epoch: int  # the main thread's read position generation: bumped at every rewind


@dataclass(frozen=True)
class Committed:
    """What one committed transaction held: for the predictor's counters."""

    good: int
    dead: int
    version: int
    ends: dict[int, int]  # per input partition, the offset after the batch


class Transactions:
    """The transaction stage. `submit` from the main thread; `committed` is called in this stage's thread after
    each commit."""

    def __init__(self, kafka: Producer, dead: clients.DeadLetters, output_topic: str, transactional_id: str,
                 committed: Callable[[Committed], None]) -> None:
        self.kafka = kafka
        self.dead = dead
        self.output_topic = output_topic
        self.transactional_id = transactional_id
        self.committed = committed
        self.aborted = 0
        self._queue: queue.Queue[Scored | None] = queue.Queue(maxsize=1)
        self._idle = threading.Condition()
        self._busy = 0  # submitted and not yet committed, aborted or dropped
        self._failed: BaseException | None = None
        self._dropped_epoch = -1  # batches of this epoch or older are dropped unsent (an earlier one aborted)
        self._rewind: dict[int, int] = {}  # per partition, where the main thread must seek back to
        self._thread = threading.Thread(target=self._run, name="predictor-transactions", daemon=True)

    def start(self) -> Transactions:
        try:  # fences an older producer of this id; aborts what it left open
            self.kafka.init_transactions(TXN_TIMEOUT)
        except KafkaException as exc:
            raise TransactionsUnavailable(f"the broker did not start a transaction for transactional id "
                                          f"{self.transactional_id!r}: {clients.error_text(exc)}") from exc
        self._thread.start()
        return self

    # --- the main thread's side -----------------------------------------------------------------
    def submit(self, scored: Scored) -> None:
        """Queue a scored batch; blocks while one batch already waits behind the transaction in progress."""
        self.raise_failure()
        with self._idle:
            self._busy += 1
        self._queue.put(scored)

    def rewind(self) -> tuple[dict[int, int], int] | None:
        """After an abort: (per partition, the offset to seek back to; the epoch to read on with), else None.
        The main thread seeks, then tags what it submits with the new epoch."""
        with self._idle:
            if not self._rewind:
                return None
            positions, self._rewind = self._rewind, {}
            return positions, self._dropped_epoch + 1

    def drain(self, timeout: float = 2 * TXN_TIMEOUT + 5) -> None:
        """Wait until every submitted batch is committed or dropped (before partitions are revoked, at the end)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._busy == 0 or self._failed is not None, timeout):
                raise TransactionAborted(f"the transactions in progress did not finish within {timeout:.0f} s")
        self.raise_failure()

    def raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(2 * TXN_TIMEOUT + 5)

    # --- this stage's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while (scored := self._queue.get()) is not None:
            try:
                if self._failed is None and scored.epoch > self._dropped_epoch:
                    self._transact(scored)
            except BaseException as exc:  # handed to the main thread, which raises it
                self._failed = exc
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _transact(self, scored: Scored) -> None:
        batch, topic, produce = scored.batch, self.output_topic, self.kafka.produce
        self.kafka.begin_transaction()
        try:
            dead = batch.dead_letter(self.dead)
            for value, key in zip(scored.values, scored.keys, strict=True):
                produce(topic, value, key)
            ends = batch.ends()
            self.kafka.send_offsets_to_transaction([TopicPartition(batch.topic, p, end) for p, end in ends.items()],
                                                   scored.group, TXN_TIMEOUT)
            self.kafka.commit_transaction(TXN_TIMEOUT)
        except KafkaException as exc:
            self._abort(scored, exc)
            return
        TRANSACTIONS.labels("committed").inc()
        self.committed(Committed(len(batch) - dead, dead, scored.version, ends))

    def _abort(self, scored: Scored, exc: KafkaException) -> None:
        """Abort the batch's transaction, drop what was submitted after it and ask the main thread to seek back to
        its first offsets; a fatal error (this producer was fenced by a newer one of the same transactional.id)
        ends the process."""
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and error.fatal():
            raise TransactionAborted(f"transactional id {self.transactional_id!r} can no longer commit (another "
                                     f"replica with the same id took over?): {clients.error_text(exc)}") from exc
        self.aborted += 1
        TRANSACTIONS.labels("aborted").inc()
        log.warning("transaction aborted; the batch will be scored again",
                    extra={"error": clients.error_text(exc), "records": len(scored.batch)})
        try:
            self.kafka.abort_transaction(TXN_TIMEOUT)
        except KafkaException as again:
            raise TransactionAborted(f"could not abort the transaction: {clients.error_text(again)}") from again
        with self._idle:
            self._dropped_epoch = scored.epoch
            for partition, start, _end in scored.batch.ranges():
                self._rewind[partition] = min(self._rewind.get(partition, start), start)

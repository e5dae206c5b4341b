"""Read a whole topic from its start in a thread and keep following it: the state topics (serving decisions,
shipped model versions) are rebuilt this way by every component that needs them.

`caught_up` is set once everything the topic held at start-up has been handed to `apply`, so a component can wait
for the state before it acts on it. The embedded broker's high watermark can be below the true end; end-of-partition
events settle it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Self

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from streamtrain.kafka import clients
from streamtrain.service.config import CommonSettings

log = logging.getLogger(__name__)


class Follower:
    def __init__(self, settings: CommonSettings, topic: str, client: str, apply: Callable[[Message], None],
                 group: str) -> None:
        """apply(message) runs in the follower's thread for every record, in each partition's order; group: the
        consumer's group id (clients.reader_group), never joined nor committed to."""
        self.s = settings
        self.topic = topic
        self.client = client
        self.group = group
        self.apply = apply
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)
        self._consumer: Any = None
        self._ends: dict[int, int] = {}
        self._positions: dict[int, int] = {}

    def start(self, timeout: float = 30.0) -> Self:
        """Raises TimeoutError when the topic has no partitions within `timeout` (it does not exist)."""
        self._consumer = clients.consumer(self.s, self.client, self.group, **{"enable.partition.eof": True})
        try:
            parts = clients.partitions_of(self._consumer, self.topic, timeout=timeout)
        except TimeoutError:
            self._consumer.close()
            raise
        self._ends = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10,
                                                              cached=False)[1] for p in parts}
        self._positions = {p: 0 for p in parts}
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        if all(end <= 0 for end in self._ends.values()):
            self.caught_up.set()
        self._thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        return self.caught_up.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._consumer is not None:
            self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # poll() returns as soon as a record arrives (consume(500, t) waits out t for 500 of them): a decision
            # reaches the predictors in milliseconds; then take what else is queued without waiting.
            first = self._consumer.poll(0.5)
            for msg in [first, *self._consumer.consume(num_messages=500, timeout=0)] if first is not None else []:
                partition = msg.partition()
                error = msg.error()
                if error is None:
                    self._positions[partition] = msg.offset() + 1
                    try:
                        self.apply(msg)
                    except Exception:  # one bad record must not stop the state from following the topic
                        log.exception("record skipped", extra={"topic": self.topic, "offset": msg.offset()})
                elif error.code() == KafkaError._PARTITION_EOF and partition in self._ends:
                    self._positions[partition] = max(self._positions[partition], self._ends[partition])
            if not self.caught_up.is_set() and all(self._positions[p] >= e for p, e in self._ends.items()):
                self.caught_up.set()

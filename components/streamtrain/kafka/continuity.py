"""Is the log under our offsets still the log we were reading? Guards against silent data loss.

A broker that loses its data (tansu keeps topics in memory: a restart empties it) and gets its topics
re-created, or a topic deleted and re-created by hand, leaves a consumer's offsets pointing into a
different log. Nothing tells the consumer, measured with tansu 0.6 and librdkafka 2.16: a consumer at
offset 1,000 of a topic whose broker was restarted and re-filled with 3,000 new records went on to
read new records 1,000..2,999, skipping the first 1,000 without any error (only transport errors
while the broker was down). Fetching past the end returns nothing either (no OFFSET_OUT_OF_RANGE).

Kafka gives every topic a random id when it is created, so a re-created topic has a new id. The
guard remembers the id the offsets belong to and compares it with the broker's:
 - after the client lost its connection (librdkafka reports transport errors through error_cb), the
   next batch is held until the id is verified;
 - every `every` seconds anyway.
A different id raises OffsetLost; the trainer then applies --on-offset-loss. The check never relies
on a timeout: a slow broker delays the verdict, it cannot produce a false one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError

from streamtrain.kafka import clients
from streamtrain.kafka.batches import OffsetLost
from streamtrain.service.config import CommonSettings

log = logging.getLogger(__name__)

# Errors after which the broker may have been replaced under us.
_CONNECTION_LOST = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}


class LogGuard:
    def __init__(self, settings: CommonSettings, topic: str, expected_id: str | None, every: float = 10.0,
                 unverified_grace: float = 30.0) -> None:
        self.settings = settings
        self.topic = topic
        self.expected_id = expected_id
        self.every = every
        self.unverified_grace = unverified_grace  # a broker that never says ids cannot hold the stream forever
        self.suspect = False
        self.checks = 0
        self._checked_at = time.monotonic()
        self._admin: Any = None

    def error_cb(self, error: KafkaError) -> None:
        """librdkafka's error callback (runs in the thread that polls the client): only notes the loss."""
        if error.code() in _CONNECTION_LOST:
            if not self.suspect:
                log.warning("Kafka connection lost; the topic will be verified before training resumes",
                            extra={"topic": self.topic, "error": error.str()})
            self.suspect = True
        else:
            log.debug("Kafka client error", extra={"error": error.str()})

    def current_id(self) -> str | None:
        if self._admin is None:
            self._admin = clients.admin(self.settings, "log-guard")
        return clients.topic_id(self._admin, self.topic, timeout=5)

    def verify(self, holding: bool, stop: threading.Event) -> None:
        """Raise OffsetLost if the topic is not the one our offsets belong to.

        holding: records were just fetched and wait to be handed over; after a connection loss
        they are held until the id could be verified (or `unverified_grace` passed).
        """
        if not self.suspect and time.monotonic() - self._checked_at < self.every:
            return
        waited = time.monotonic()
        while True:
            if self._check():
                return
            if not (self.suspect and holding) or time.monotonic() - waited > self.unverified_grace:
                if self.suspect and holding:
                    log.warning("could not verify the topic id after a connection loss; going on",
                                extra={"topic": self.topic})
                    self.suspect = False
                return
            if stop.wait(1.0):
                return

    def _check(self) -> bool:
        """True if verified (same id, or the first id seen); raises OffsetLost on a different one."""
        current = self.current_id()
        self._checked_at = time.monotonic()
        self.checks += 1
        if current is None:  # unknown topic (not re-created yet), broker away, or no ids: no verdict
            return False
        if self.expected_id is None:
            self.expected_id = current
        elif current != self.expected_id:
            raise OffsetLost(f"topic {self.topic} was re-created (topic id {self.expected_id}, now {current}): "
                             "the broker lost the records our offsets point to")
        if self.suspect:
            log.info("topic verified after the connection loss", extra={"topic": self.topic, "topic_id": current})
        self.suspect = False
        return True

"""Broker stall detection: notice when the Kafka cluster stops answering, say so, and say when it is back.

librdkafka rides out a stalled broker silently: produce calls queue, fetches just return nothing,
and a frozen broker (SIGSTOP, a long GC pause, a hung disk) keeps its TCP connections open, so no
error reaches the application for a minute or more. Each component therefore asks the cluster for
metadata every few seconds with its own small client (never the consumer, which belongs to its
reader thread). A request unanswered for --broker-stall-seconds is a stall: a warning line and
metrics; when the cluster answers again, a line with the stall's length.

    streamtrain_broker_reachable{component}        1 when the last check was answered, else 0
    streamtrain_broker_stalls_total{component}     stalls seen since the start
    streamtrain_broker_unreachable_seconds{component}  length of the ongoing stall (0 when none)
    streamtrain_broker_last_stall_seconds{component}   length of the last stall that ended
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import Counter, Gauge

from streamtrain.kafka import clients
from streamtrain.service.config import CommonSettings

log = logging.getLogger("streamtrain.broker")

REACHABLE = Gauge("streamtrain_broker_reachable", "1 when the Kafka cluster answered the last check", ["component"])
STALLS = Counter("streamtrain_broker_stalls_total", "Times the Kafka cluster stopped answering", ["component"])
UNREACHABLE = Gauge("streamtrain_broker_unreachable_seconds",
                    "Seconds the Kafka cluster has not been answering (0 when it answers)", ["component"])
LAST_STALL = Gauge("streamtrain_broker_last_stall_seconds", "Length of the last broker stall that ended",
                   ["component"])


class BrokerWatch:
    """A daemon thread that checks the cluster answers; `stalls` and `down_since` for callers."""

    def __init__(self, settings: CommonSettings, component: str) -> None:
        self.settings = settings
        self.component = component
        self.every = settings.broker_check_seconds
        self.timeout = settings.broker_stall_seconds
        self.stalls = 0
        self.longest = 0.0
        self.down_since: float | None = None  # monotonic time of the last answered check before the stall
        self._last_answer = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-watch", daemon=True)
        self._client: Any = None
        REACHABLE.labels(component).set(1)
        UNREACHABLE.labels(component).set(0)
        STALLS.labels(component)  # exported as 0 from the start

    def start(self) -> BrokerWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop checking; a check in flight is not waited for (the thread is a daemon)."""
        self._stop.set()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.check()

    def check(self) -> bool:
        """One metadata request; True if the cluster answered within the stall timeout."""
        started = time.monotonic()
        try:
            if self._client is None:
                self._client = clients.admin(self.settings, f"{self.component}-watch")
            self._client.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            self._unanswered(started, exc)
            return False
        self._answered()
        return True

    def _unanswered(self, started: float, exc: KafkaException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = self._last_answer
            self.stalls += 1
            STALLS.labels(self.component).inc()
            REACHABLE.labels(self.component).set(0)
            log.warning("Kafka broker stalled: no answer; clients keep retrying",
                        extra={"component": self.component, "waited_seconds": round(now - started, 1),
                               "error": clients.error_text(exc)})
        UNREACHABLE.labels(self.component).set(now - self.down_since)

    def _answered(self) -> None:
        now = time.monotonic()
        if self.down_since is not None:
            length = now - self.down_since
            self.longest = max(self.longest, length)
            LAST_STALL.labels(self.component).set(length)
            log.warning("Kafka broker answering again after a stall",
                        extra={"component": self.component, "stall_seconds": round(length, 1)})
            self.down_since = None
        self._last_answer = now
        REACHABLE.labels(self.component).set(1)
        UNREACHABLE.labels(self.component).set(0)

    def summary(self) -> dict[str, Any]:
        return {"broker_stalls": self.stalls, "longest_broker_stall_seconds": round(self.longest, 1)}

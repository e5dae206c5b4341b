"""Finds and loads new model versions in the background, so evaluation never waits for a load.

Two triggers: an announcement on the model-events topic (fast path) and a periodic scan of the
model store (fallback, e.g. when events were missed). Versions that fail their checksums or do not
fit the data are refused with a reason and never retried; the last good model keeps serving.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from confluent_kafka import OFFSET_END, TopicPartition
from prometheus_client import Counter, Gauge

from streamtrain.kafka import clients
from streamtrain.service.config import EvaluatorSettings
from streamtrain.store import model_store
from streamtrain.store.loaded import LoadedModel, load_version

log = logging.getLogger("streamtrain.evaluator")

LOADS = Counter("streamtrain_evaluator_model_loads_total", "Model versions loaded")
REJECTIONS = Counter("streamtrain_evaluator_model_rejections_total", "Model versions refused", ["reason"])
LOAD_SECONDS = Gauge("streamtrain_evaluator_model_load_seconds", "Time to verify and load the newest version")

HISTORY_LIMIT = 1000  # loaded versions kept in /status (versions_loaded)


class ModelWatcher:
    def __init__(self, settings: EvaluatorSettings) -> None:
        self.s = settings
        self.current: LoadedModel | None = None
        self.width: int | None = None  # set once data has been seen; a version must fit it
        self.rejected: dict[int, str] = {}
        self.history: list[dict[str, Any]] = []
        self.changed = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._events: Any = None

    def start(self) -> ModelWatcher:
        try:
            self._events = clients.consumer(self.s, "evaluator-events",
                                            clients.reader_group(self.s, "evaluator", "model-events"))
            parts = clients.partitions_of(self._events, self.s.model_events_topic, timeout=10)
            self._events.assign([TopicPartition(self.s.model_events_topic, p, OFFSET_END) for p in parts])
        except Exception as exc:  # the scan still finds versions, only later
            log.warning("model-events topic unavailable; relying on store scans", extra={"error": str(exc)})
            self._events = None
        self.check()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        if self._events is not None:
            self._events.close()

    def _run(self) -> None:
        next_scan = time.monotonic() + self.s.poll_seconds
        while not self._stop.is_set():
            announced = self._poll_events(timeout=0.5)
            if announced or time.monotonic() >= next_scan or self._wake.is_set():
                self._wake.clear()
                self.check()
                next_scan = time.monotonic() + self.s.poll_seconds

    def _poll_events(self, timeout: float) -> bool:
        if self._events is None:
            return bool(self._stop.wait(timeout))
        announced = False
        # poll() returns as soon as an event arrives (consume(100, t) would wait out t for 100 of them);
        # then take whatever else is queued without waiting.
        first = self._events.poll(timeout)
        for msg in [first, *self._events.consume(num_messages=100, timeout=0)] if first is not None else []:
            if msg.error() is not None:
                continue
            try:
                event = json.loads(msg.value())
            except (TypeError, ValueError):
                continue
            if event.get("model_name") == self.s.model_name:
                announced = True
        return announced

    def check(self) -> None:
        """Load the newest good version if it is newer than the current one."""
        above = self.current.version if self.current else 0
        for number, path in model_store.candidates(self.s.model_dir, self.s.model_name, above, self.rejected):
            started = time.monotonic()
            try:
                loaded = load_version(number, path, self.width)
            except model_store.CorruptVersion as exc:
                if not path.exists():  # retention removed it while we looked: not a fault
                    continue
                self.reject(number, exc)
                continue
            manifest = loaded.manifest
            self.current = loaded
            LOADS.inc()
            LOAD_SECONDS.set(time.monotonic() - started)
            self.history.append({"version": number, "loaded_at_ms": loaded.loaded_at_ms,
                                 "newest_record_ms": manifest.get("newest_record_ms"),
                                 "records_trained": manifest.get("records_trained"),
                                 # which records the version holds: freshness is measured against these
                                 "offsets": manifest.get("offsets")})
            del self.history[:-HISTORY_LIMIT]  # a long-running evaluator loads thousands of versions
            self.changed.set()
            log.info("model version loaded", extra={"version": number,
                                                    "records_trained": manifest.get("records_trained"),
                                                    "seconds": round(time.monotonic() - started, 3)})
            return

    def reject(self, number: int, error: model_store.CorruptVersion) -> None:
        self.rejected[number] = str(error)
        REJECTIONS.labels(error.kind).inc()
        log.error("model version refused; keeping the current one",
                  extra={"version": number, "reason": str(error),
                         "serving": self.current.version if self.current else None})

    def refuse_current(self, reason: str) -> None:
        """The current version turned out unusable on the data (say, another width): drop it, look again."""
        if self.current is not None:
            self.reject(self.current.version, model_store.CorruptVersion(
                f"version {self.current.version}: incompatible: {reason}", "incompatible"))
        self.current = None
        self._wake.set()

"""The loop every component that consumes a topic runs (trainer, evaluator): one skeleton, each component's own
work plugged in.

The loop serves the HTTP endpoints, opens the component (restore, assign, start its reader), then takes batch after
batch until a stop signal, `--max-records` or `--idle-exit-seconds`, beating the liveness probe on every turn. A
component may refuse a batch for now (the evaluator before its first model): the loop offers it again. When the
broker lost the data under the component's offsets, the component recovers and hands back a new reader. On the way
out the reader stops first (nothing more arrives), then the resources the component registered are released, then
the component finishes (final checkpoint, report, flush) and returns its summary, which the loop writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streamtrain import PROCESS_START
from streamtrain.kafka.batches import Batch, BatchReader, Guard, OffsetLost
from streamtrain.kafka.tfio_reader import TfioBatchReader
from streamtrain.service import http
from streamtrain.service.config import EvaluatorSettings, TrainerSettings
from streamtrain.service.runtime import StopFlag, Throughput, write_summary

POLL_SECONDS = 0.2  # the longest a turn waits for a batch: how soon a stop signal or an idle exit is seen


class Reopen(Exception):
    """Raised by a component's handle() or tick() after it moved its read position (an operator's rewind or skip):
    the loop drops the batch in hand, which belongs to the old position, and goes on with `reader`."""

    def __init__(self, reader: Reader) -> None:
        super().__init__("reader reopened")
        self.reader = reader


class Reader(Protocol):
    def get(self, timeout: float) -> Batch | None: ...

    def stop(self) -> None: ...


class Settings(Protocol):
    http_host: str
    http_port: int
    max_records: int
    idle_exit_seconds: float
    summary_file: Path | None


class Component(Protocol):
    health: http.Health

    def status(self) -> dict[str, Any]: ...

    def endpoints(self) -> http.Endpoints: ...

    def open(self, cleanup: ExitStack) -> Reader:
        """Set up and start reading; resources to release on the way out go on `cleanup`."""
        ...

    def handle(self, batch: Batch) -> bool:
        """Do the component's work on one batch; False: not now, offer it again."""
        ...

    def consumed(self) -> int:
        """Records done with so far (used or dead-lettered): what --max-records counts."""
        ...

    def tick(self, now: float) -> None:
        """Periodic work between batches (checkpoints, versions, reports), due or not."""
        ...

    def recover(self, lost: OffsetLost) -> Reader:
        """The broker lost the data under our offsets: apply the policy, return the reader to go on with."""
        ...

    def finish(self, run: Run) -> dict[str, Any]:
        """After the reader stopped: the final work; returns the summary."""
        ...


@dataclass
class Run:
    """How the loop went, for the component's summary."""

    stopped_by: str = "stop signal"
    started: float = field(default_factory=time.monotonic)
    first_batch_seconds: float | None = None  # from the process start to the first batch handled
    throughput: Throughput = field(default_factory=Throughput)

    def summary(self) -> dict[str, Any]:
        return {"stopped_by": self.stopped_by, "seconds": round(time.monotonic() - self.started, 3),
                **self.throughput.summary()}


def run(component: Component, settings: Settings, stop: StopFlag) -> dict[str, Any]:
    if settings.http_port:
        served = component.endpoints()
        http.serve(settings.http_host, settings.http_port, component.health, component.status,
                   extra=served.routes, app=served.app, max_body=served.max_body)
    with ExitStack() as cleanup:
        reader = component.open(cleanup)
        component.health.ready = True
        state = Run()
        last_record = time.monotonic()
        held: Batch | None = None
        try:
            while not stop:
                component.health.beat()
                try:
                    batch = held or reader.get(timeout=POLL_SECONDS)
                except OffsetLost as lost:
                    state.stopped_by = "offset loss"
                    reader = component.recover(lost)
                    continue
                held = None
                now = time.monotonic()
                try:
                    if batch is not None:
                        last_record = now
                        if not component.handle(batch):
                            held = batch
                            continue
                        state.throughput.mark(component.consumed())
                        if state.first_batch_seconds is None:
                            state.first_batch_seconds = time.monotonic() - PROCESS_START
                    component.tick(now)
                except Reopen as moved:
                    reader, held = moved.reader, None
                    continue
                if settings.max_records and component.consumed() >= settings.max_records:
                    state.stopped_by = "max records"
                    break
                if settings.idle_exit_seconds and (now - last_record >= settings.idle_exit_seconds
                                                   or _finished(reader)):
                    state.stopped_by = "idle"
                    break
        finally:
            reader.stop()
    summary = component.finish(state)
    write_summary(settings.summary_file, summary)
    return summary


def start_reader(s: TrainerSettings | EvaluatorSettings, topic: str, width: int | None, component: str,
                 consumer: Callable[[], tuple[Any, Guard | None]]) -> BatchReader | TfioBatchReader:
    """The reader --ingest picks, started: tensorflow-io's datasets, or `consumer()` (a confluent-kafka consumer,
    assigned or subscribed, and the guard of its log) read a batch ahead in a thread."""
    if s.ingest == "tensorflow-io":
        kind = "batch" if component == "trainer" else "group"
        return TfioBatchReader(s, topic, s.group_id, s.read_size(), width, kind, s.idle_exit_seconds, component).start()
    kafka, guard = consumer()
    return BatchReader(kafka, s.read_size(), s.batch_max_wait_ms / 1000, width, guard=guard).start()


def _finished(reader: Reader) -> bool:
    """A reader with an end (tensorflow-io's datasets end at their stream timeout) has reached it."""
    finished = getattr(reader, "finished", None)
    return finished is not None and finished.is_set()

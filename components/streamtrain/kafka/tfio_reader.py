"""The tutorial-style ingest backend: tensorflow-io's Kafka datasets instead of confluent-kafka.

For users coming from the TensorFlow Kafka tutorial: the trainer reads with KafkaBatchIODataset
and the evaluator with KafkaGroupIODataset, and both decode with streamtrain.wire like the default
path. What this backend cannot do: tensorflow-io commits offsets when it fetches, not after
training, and does not expose record offsets, so there is no exactly-once ledger and a restart
resumes from the group's committed offsets (records fetched but not trained are skipped).
It also cannot talk to the embedded broker (its bundled librdkafka fails tansu's handshake).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import numpy as np

from streamtrain.kafka import clients
from streamtrain.kafka.batches import Batch, take
from streamtrain.service.config import CommonSettings
from streamtrain.wire import decode_batch

log = logging.getLogger(__name__)


def _configuration(settings: CommonSettings, component: str, group_timeout_ms: int) -> list[str]:
    conf = clients.client_config(settings, component)
    conf.pop("bootstrap.servers")
    conf.update({"session.timeout.ms": group_timeout_ms, "max.poll.interval.ms": max(group_timeout_ms + 1000, 10_000),
                 "auto.offset.reset": "earliest", "enable.auto.commit": True})
    return [f"{k}={v}" for k, v in conf.items() if v is not None]


class TfioBatchReader:
    """Same interface as BatchReader; batches carry offset -1 (tensorflow-io does not expose them)."""

    def __init__(self, settings: CommonSettings, topic: str, group_id: str, size: int, width: int | None,
                 kind: str, idle_exit_seconds: float, component: str) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.size = size
        self.width = width
        self.kind = kind  # "batch" (trainer) or "group" (evaluator)
        self.stream_timeout_ms = int(idle_exit_seconds * 1000) if idle_exit_seconds else -1
        self.component = component
        self.high_watermarks: dict[int, int] = {}
        self.finished = threading.Event()  # the dataset ended (stream timeout)
        self._queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tfio-reader", daemon=True)

    def start(self) -> TfioBatchReader:
        self._thread.start()
        return self

    def _datasets(self) -> Any:
        import tensorflow_io as tfio

        conf = _configuration(self.settings, self.component, 7000)
        streaming = tfio.experimental.streaming
        if self.kind == "batch":
            # One mini dataset per fetched batch, as in the tutorial's online-training loop.
            for mini in streaming.KafkaBatchIODataset(topics=[self.topic], group_id=self.group_id,
                                                      servers=self.settings.bootstrap_servers,
                                                      stream_timeout=self.stream_timeout_ms, configuration=conf):
                yield from mini.batch(self.size)
        else:
            yield from streaming.KafkaGroupIODataset(topics=[self.topic], group_id=self.group_id,
                                                     servers=self.settings.bootstrap_servers,
                                                     stream_timeout=self.stream_timeout_ms,
                                                     configuration=conf).batch(self.size)

    def _run(self) -> None:
        try:
            for values, keys in self._datasets():
                if self._stop.is_set():
                    return
                batch = self._to_batch([bytes(v) for v in values.numpy()], [bytes(k) for k in keys.numpy()])
                self._queue.put(batch)
            self.finished.set()
        except BaseException as exc:
            self._queue.put(exc)

    def _to_batch(self, values: list[bytes], keys: list[bytes]) -> Batch:
        decoded, self.width = decode_batch(list(keys), list(values), self.width)
        n = len(values)
        return Batch(topic=self.topic, partitions=np.full(n, -1, np.int32), offsets=np.full(n, -1, np.int64),
                     timestamps=np.full(n, int(time.time() * 1000), np.int64), keys=list(keys),
                     values=list(values), decoded=decoded, width=self.width, fetched_at=time.time())

    def get(self, timeout: float) -> Batch | None:
        return take(self._queue, timeout)

    def ready(self) -> bool:
        """Whether a batch (or an error) waits to be taken."""
        return not self._queue.empty()

    def commit(self, offsets: list[Any]) -> None:
        """tensorflow-io commits by itself when it fetches; nothing to do."""

    def flush_commit(self) -> None:
        """See commit()."""

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

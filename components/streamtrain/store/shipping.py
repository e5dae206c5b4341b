"""Model versions over Kafka: the model-files topic as a replica of the model store, so that evaluators and
predictors can run on any node, also where the only storage class is ReadWriteOnce.

The trainer ships every version it publishes: each file in chunks of at most CHUNK bytes, keyed
``<model>/<version>/<file>/<chunk>``, the manifest last; and when retention removes a version, a tombstone for each
of its keys. The topic is compacted, so it holds what the store holds. A reader (`Receiver`, --model-source kafka)
follows the topic from its start into a local directory: a version appears there, by the store's own atomic rename,
only once every file has arrived and matches the manifest's checksums; a tombstone removes it.

>>> keys = chunk_keys("m", 7, {"files": {"model.keras": {"bytes": 600_000}, "saved_model.pb": {"bytes": 10}}})
>>> [key.decode() for key in keys]
['m/7/model.keras/0', 'm/7/model.keras/1', 'm/7/saved_model.pb/0', 'm/7/manifest.json/0']
>>> parse_key(b"m/7/variables/variables.index/0")
('m', 7, 'variables/variables.index', 0)
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer
from prometheus_client import Counter

from streamtrain.kafka import clients
from streamtrain.kafka.follow import Follower
from streamtrain.service.config import CommonSettings, EvaluatorSettings, PredictorSettings
from streamtrain.store import atomic, model_store

log = logging.getLogger(__name__)

CHUNK = 512 * 1024  # well under Kafka's default 1 MB record limit
CHUNKS_HEADER = "streamtrain.chunks"
RECEIVED = Counter("streamtrain_model_versions_received_total", "Versions received over the model-files topic",
                   ["outcome"])
SHIP_FAILURES = Counter("streamtrain_trainer_ship_failures_total",
                        "Model-file records the broker did not take (a missing topic, a denied ACL)")


def _delivered(err: Any, msg: Message) -> None:
    if err is not None:
        SHIP_FAILURES.inc()
        log.error("model-file record not shipped", extra={"key": (msg.key() or b"").decode(errors="replace"),
                                                          "error": str(err)})


def _chunks(size: int) -> int:
    return max(1, -(-size // CHUNK))


def chunk_keys(model: str, version: int, manifest: dict[str, Any]) -> list[bytes]:
    """Every key a version takes on the topic, the manifest's last."""
    files = [(path, int(entry["bytes"])) for path, entry in sorted(manifest["files"].items())]
    return [f"{model}/{version}/{path}/{i}".encode() for path, size in files for i in range(_chunks(size))] + \
        [f"{model}/{version}/{model_store.MANIFEST}/0".encode()]


def parse_key(key: bytes) -> tuple[str, int, str, int]:
    """(model, version, file, chunk) of a key; ValueError if it is not one of ours."""
    model, version, rest = key.decode().split("/", 2)
    path, chunk = rest.rsplit("/", 1)
    return model, int(version), path, int(chunk)


def ship(kafka: Producer, topic: str, model: str, version: model_store.Version) -> int:
    """Send a published version's files (then its manifest); returns the records sent."""
    sent = 0
    for path in [*sorted(version.manifest["files"]), model_store.MANIFEST]:
        data = (version.path / path).read_bytes()
        count = _chunks(len(data))
        for i in range(count):
            kafka.produce(topic, key=f"{model}/{version.number}/{path}/{i}".encode(),
                          value=data[i * CHUNK:(i + 1) * CHUNK], headers=[(CHUNKS_HEADER, str(count).encode())],
                          on_delivery=_delivered)
            kafka.poll(0)
            sent += 1
    return sent


def ship_store(kafka: Producer, topic: str, base: Path, model: str) -> int:
    """Ship every version the store holds (at the trainer's start): the topic may have lost them (a broker with
    ephemeral storage) or never had them (shipping just turned on). Receivers ignore versions they hold already."""
    shipped = 0
    for number in model_store.version_numbers(base, model):
        path = model_store.model_root(base, model) / str(number)
        try:
            version = model_store.Version(number, path, model_store.verify(path))
        except model_store.CorruptVersion as exc:
            log.warning("model version not shipped", extra={"version": number, "reason": str(exc)})
            continue
        ship(kafka, topic, model, version)
        shipped += 1
    return shipped


def unship(kafka: Producer, topic: str, model: str, number: int, manifest: dict[str, Any]) -> int:
    """Tombstones for every key of a removed version (compaction then drops it from the topic)."""
    keys = chunk_keys(model, number, manifest)
    for key in keys:
        kafka.produce(topic, key=key, value=None, on_delivery=_delivered)
    kafka.poll(0)
    return len(keys)


@dataclass
class _Arriving:
    """The chunks of one version received so far."""

    chunks: dict[str, dict[int, bytes]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, path: str, chunk: int, count: int, data: bytes) -> None:
        self.chunks.setdefault(path, {})[chunk] = data
        self.counts[path] = count

    def file(self, path: str) -> bytes | None:
        parts = self.chunks.get(path, {})
        if path not in self.counts or len(parts) < self.counts[path]:
            return None
        return b"".join(parts[i] for i in range(self.counts[path]))


class Receiver(Follower):
    """Follows the model-files topic into `<model_dir>/<model>/`: the store a reader on another node loads from."""

    def __init__(self, settings: CommonSettings, model_dir: Path, model_name: str, component: str) -> None:
        self.root = model_store.model_root(model_dir, model_name)
        self.model_name = model_name
        self.arriving: dict[int, _Arriving] = {}
        self.received: list[int] = []
        self.refused: dict[int, str] = {}
        self.changed = threading.Event()
        super().__init__(settings, settings.model_files_topic, f"{component}-model-files", self._apply,
                         clients.reader_group(settings, component, "model-files"))

    def start(self, timeout: float = 30.0) -> Receiver:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.clean_staging(self.root)
        super().start(timeout)
        return self

    def _apply(self, msg: Message) -> None:
        model, number, path, chunk = parse_key(msg.key() or b"")
        if model != self.model_name:
            return
        value = msg.value()
        if value is None:  # the trainer's retention removed the version
            self.arriving.pop(number, None)
            if (self.root / str(number)).exists():
                atomic.remove_dir(self.root / str(number))
                self.changed.set()
            return
        if (self.root / str(number)).exists():
            return  # a version is immutable once complete: a repeat (a re-shipped version) changes nothing
        count = int(dict(msg.headers() or []).get(CHUNKS_HEADER) or b"1")
        arriving = self.arriving.setdefault(number, _Arriving())
        arriving.add(path, chunk, count, value)
        manifest_bytes = arriving.file(model_store.MANIFEST)
        if manifest_bytes is not None:
            self._complete(number, arriving, manifest_bytes)

    def _complete(self, number: int, arriving: _Arriving, manifest_bytes: bytes) -> None:
        manifest = json.loads(manifest_bytes)
        files = {path: arriving.file(path) for path in manifest.get("files", {})}
        if any(data is None for data in files.values()):
            return  # (the manifest travels last; a file still missing means a chunk is still to come)
        del self.arriving[number]
        staged = atomic.staging_dir(self.root, str(number))
        try:
            for path, data in files.items():
                (staged / path).parent.mkdir(parents=True, exist_ok=True)
                (staged / path).write_bytes(data or b"")
            (staged / model_store.MANIFEST).write_bytes(manifest_bytes)
            model_store.verify(staged)
            atomic.commit_dir(staged, self.root / str(number))
        except model_store.CorruptVersion as exc:
            atomic.remove_dir(staged)
            self.refused[number] = str(exc)
            RECEIVED.labels("refused").inc()
            log.error("shipped model version refused", extra={"version": number, "reason": str(exc)})
            return
        except BaseException:
            atomic.remove_dir(staged)
            raise
        self.received.append(number)
        del self.received[:-100]
        RECEIVED.labels("stored").inc()
        self.changed.set()
        log.info("model version received", extra={"version": number, "files": len(files)})


def receive(settings: EvaluatorSettings | PredictorSettings, component: str, wait: float = 60.0) -> Receiver | None:
    """With --model-source kafka: a started Receiver into --model-dir, caught up with the topic (or after `wait`
    seconds, with a warning); None with --model-source volume."""
    if settings.model_source != "kafka":
        return None
    receiver = Receiver(settings, settings.model_dir, settings.model_name, component).start()
    if not receiver.wait(wait):
        log.warning("the model-files topic was not read to its end yet", extra={"seconds": wait})
    return receiver

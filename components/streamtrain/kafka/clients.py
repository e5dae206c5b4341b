"""Kafka clients built from settings: configuration, topic administration, watermarks, dead letters."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import Counter

from streamtrain.service.config import CommonSettings
from streamtrain.wire.base import FORMAT_HEADER

log = logging.getLogger(__name__)

# Header names carried by every dead-lettered record.
H_REASON = "streamtrain.reason"
H_SOURCE_TOPIC = "streamtrain.source.topic"
H_SOURCE_PARTITION = "streamtrain.source.partition"
H_SOURCE_OFFSET = "streamtrain.source.offset"
H_COMPONENT = "streamtrain.component"


def client_config(settings: CommonSettings, component: str) -> dict[str, Any]:
    """librdkafka settings common to every client of a component, security included."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id or f"streamtrain-{component}",
        "security.protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_ca_location:
            conf["ssl.ca.location"] = str(settings.ssl_ca_location)
        if settings.ssl_certificate_location and settings.ssl_key_location:
            conf["ssl.certificate.location"] = str(settings.ssl_certificate_location)
            conf["ssl.key.location"] = str(settings.ssl_key_location)
        conf["ssl.endpoint.identification.algorithm"] = "https" if settings.ssl_endpoint_identification else "none"
    if settings.security_protocol.startswith("SASL"):
        conf["sasl.mechanism"] = settings.sasl_mechanism
        conf["sasl.username"] = settings.sasl_username
        conf["sasl.password"] = settings.sasl_secret()
    return conf


def producer(settings: CommonSettings, component: str, **overrides: Any) -> Producer:
    conf = client_config(settings, component)
    conf.update({
        "enable.idempotence": True,  # retries after a broker stall never duplicate a record
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "lz4",
    })
    conf.update(overrides)
    return Producer(conf)


class ConsumerFactory(Protocol):
    def __call__(self, settings: CommonSettings, component: str, group_id: str, **overrides: Any) -> Consumer: ...


def reader_group(settings: CommonSettings, component: str, reads: str) -> str:
    """The group id of a consumer that only assign()s partitions and never commits: `<group>.<reads>`, where
    <group> is the component's own group id (--group-id) where it has one, else `streamtrain-<component>`.

    confluent-kafka requires a group id even then, and librdkafka asks the broker for that group's coordinator
    about every second (FindCoordinator needs Describe on the group). A fixed name per component and purpose lets
    the component's Kafka user be granted exactly that Describe: a made-up name was denied, and logged by the
    broker, on every lookup. Describe alone also keeps such a reader from joining a group or committing to one.
    """
    group = getattr(settings, "group_id", None) or f"streamtrain-{component}"
    return f"{group}.{reads}"


def consumer(settings: CommonSettings, component: str, group_id: str, **overrides: Any) -> Consumer:
    """group_id: the component's group, or reader_group() for a consumer that only assign()s partitions."""
    conf = client_config(settings, component)
    conf.update({
        # A consumer group only for commits (lag monitoring, transactions) when partitions are assigned explicitly.
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 65536,
        # librdkafka >= 2.4 postpones the next fetch by this much once its local queue is over the
        # thresholds (default 1 s). A trainer draining ~100k records/s empties that queue well within
        # a second and then sat idle: consume + decode ran at 86k records/s instead of 160k.
        "fetch.queue.backoff.ms": 10,
    })
    conf.update(overrides)
    return Consumer(conf)


def admin(settings: CommonSettings, component: str) -> AdminClient:
    return AdminClient(client_config(settings, component))


def topic_names(settings: CommonSettings) -> list[str]:
    return [settings.train_topic, settings.test_topic, settings.metrics_topic, settings.model_events_topic,
            settings.dead_letter_topic, settings.control_topic, settings.model_files_topic, settings.input_topic,
            settings.output_topic]


def topic_configs(settings: CommonSettings) -> dict[str, dict[str, str]]:
    """Topic settings beyond the broker's defaults: the state topics are compacted (the last record of each key:
    each decision, each chunk of each version in the store)."""
    return {settings.control_topic: {"cleanup.policy": "compact"},
            settings.model_files_topic: {"cleanup.policy": "compact"}}


def create_topics(client: AdminClient, topics: Iterable[str], partitions: int, timeout: float = 30.0,
                  configs: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Create the topics that do not exist yet (with `configs[topic]` where given); returns the ones created."""
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [t for t in topics if t not in existing]
    if not wanted:
        return []
    futures = client.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1,
                                             config=(configs or {}).get(t, {})) for t in wanted],
                                   operation_timeout=timeout)
    for future in futures.values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    wait_for_topics(client, wanted, timeout)
    return wanted


def wait_for_topics(client: AdminClient, topics: Iterable[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    wanted = set(topics)
    while True:
        metadata = client.list_topics(timeout=timeout).topics
        missing = {t for t in wanted if t not in metadata or metadata[t].error is not None}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not available: {sorted(missing)}")
        time.sleep(0.2)


def partitions_of(client: Consumer | Producer | AdminClient, topic: str, timeout: float = 30.0) -> list[int]:
    """Partition ids of a topic; waits for metadata so a fresh topic is seen."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = client.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is not None and metadata.error is None and metadata.partitions:
            return sorted(metadata.partitions)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic!r} has no partitions (does it exist?)")
        time.sleep(0.2)


def watermarks(client: Consumer, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} for a topic.

    Beware: the embedded broker (tansu 0.6) reports the high watermark as the base offset of the
    last record batch + 1, so `high` can be below the true end; see `records_exist`.
    """
    return {p: client.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
            for p in partitions_of(client, topic)}


def error_text(exc: BaseException) -> str:
    """One line for a Kafka exception (KafkaException wraps a KafkaError)."""
    inner = exc.args[0] if exc.args else exc
    text = inner.str() if isinstance(inner, KafkaError) else str(inner)
    return text.replace("\n", " ")[:300]


def topic_id(client: AdminClient, topic: str, timeout: float = 10.0) -> str | None:
    """The topic's id: Kafka gives each topic a random one at creation, so a re-created topic (or a
    broker that lost its data and had it re-created) shows a new id. None if the topic does not exist
    or the broker does not say (older brokers)."""
    try:
        description = client.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic].result(timeout)
    except (KafkaException, TimeoutError):  # no answer (yet): no verdict
        return None
    found = str(description.topic_id) if getattr(description, "topic_id", None) is not None else ""
    return found if found and found != "AAAAAAAAAAAAAAAAAAAAAA" else None  # the all-zero id means "unknown"


def records_exist(settings: CommonSettings, topic: str, offsets: dict[int, int], timeout: float = 5.0) -> set[int]:
    """Partitions whose record at the given offset is really on the broker (fetched to find out).

    Used when a watermark says a checkpointed position is past the end: on real Kafka that means
    the data is gone; on brokers with inexact watermarks, fetching the record settles it.
    """
    if not offsets:
        return set()
    probe = consumer(settings, "probe", reader_group(settings, "probe", "probe"), **{"auto.offset.reset": "error"})
    try:
        probe.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        found: set[int] = set()
        answered: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(answered) < len(offsets) and time.monotonic() < deadline:
            for msg in probe.consume(num_messages=len(offsets), timeout=0.5):
                partition = msg.partition()
                if partition is None or partition in answered:
                    continue
                answered.add(partition)
                if msg.error() is None and msg.offset() == offsets[partition]:
                    found.add(partition)
        return found
    finally:
        probe.close()


def first_at_or_after(settings: CommonSettings, topic: str, starts: dict[int, int], time_ms: int,
                      timeout: float = 300.0) -> dict[int, int]:
    """Per partition, the offset of the first record from `starts` on whose timestamp is at or after `time_ms`, or
    the log's end when none is: read forward, since a broker's own time index cannot be trusted everywhere (the
    embedded one answers a ListOffsets by time with offset 0, whatever the time)."""
    if not starts:
        return {}
    probe = consumer(settings, "probe", reader_group(settings, "probe", "probe"), **{"enable.partition.eof": True})
    try:
        found, pending = dict(starts), set(starts)  # found[p]: the offset after the last record read, until decided
        probe.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in probe.consume(num_messages=1000, timeout=0.5):
                partition, offset, error = msg.partition(), msg.offset(), msg.error()
                if partition not in pending or partition is None:
                    continue
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                    continue
                if offset is None:
                    continue
                if msg.timestamp()[1] >= time_ms:
                    found[partition] = offset
                    pending.discard(partition)
                else:
                    found[partition] = offset + 1
        if pending:
            raise TimeoutError(f"{topic} partitions {sorted(pending)} not read to {time_ms} ms within {timeout:g} s")
        return found
    finally:
        probe.close()


# One counter for the three components (each process runs one; tests may import all three).
DEAD_LETTERS = Counter("streamtrain_dead_letter_total", "Records sent to the dead-letter topic",
                       ["component", "reason"])


# Delivery reports of records an aborted transaction purged from the producer's queue: not failures.
WITHDRAWN = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


class DeadLetters:
    """Sends records that cannot be used to the dead-letter topic, with the reason and origin in headers."""

    def __init__(self, kafka: Producer, topic: str, component: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.component = component
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.withdrawn = 0
        self.by_reason: dict[str, int] = {}

    def send(self, key: bytes | None, value: bytes | None, kind: str, detail: str,
             source_topic: str = "", partition: int = -1, offset: int = -1, value_format: bytes | None = None) -> None:
        """kind: one word, the reason's prefix and the metric's label; value_format: the record's
        streamtrain.format header, kept so the dead letter stays decodable."""
        headers: list[tuple[str, str | bytes | None]] = [
            (H_REASON, f"{kind}: {detail}".encode()),
            (H_SOURCE_TOPIC, source_topic.encode()),
            (H_SOURCE_PARTITION, str(partition).encode()),
            (H_SOURCE_OFFSET, str(offset).encode()),
            (H_COMPONENT, self.component.encode()),
        ]
        if value_format is not None:
            headers.append((FORMAT_HEADER, value_format))
        self.by_reason[kind] = self.by_reason.get(kind, 0) + 1
        DEAD_LETTERS.labels(self.component, kind).inc()
        self.sent += 1
        self.kafka.produce(self.topic, value=value, key=key, headers=headers, on_delivery=self._delivered)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        elif err.code() in WITHDRAWN:  # its transaction was aborted: the record is sent again with its batch
            self.withdrawn += 1
        else:
            self.failed += 1
            log.error("dead-letter delivery failed", extra={"error": str(err)})

    @property
    def pending(self) -> int:
        return self.sent - self.acked - self.failed - self.withdrawn

    def settle(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every dead letter sent so far; True if none is pending.

        Call it before recording the source offsets as done (a checkpoint, a commit): a dead letter
        still queued in this process when it dies would otherwise be lost, its record marked handled.
        """
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.kafka.flush(min(0.5, max(deadline - time.monotonic(), 0.0)))
        return not self.pending


def send_json(kafka: Producer, topic: str, payload: dict[str, Any], key: str | None = None) -> None:
    """Fire-and-forget JSON message (metrics, model events); the producer is idempotent and retries."""
    kafka.produce(topic, value=json.dumps(payload, default=str).encode(), key=key.encode() if key else None)
    kafka.poll(0)

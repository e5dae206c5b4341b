"""Read what the broker holds, by consuming it (the embedded broker's watermarks are not exact)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from streamtrain.kafka import clients
from streamtrain.service.config import CommonSettings


def _conf(client: str | dict[str, Any]) -> dict[str, Any]:
    """A bootstrap address, or a whole librdkafka configuration (TLS tests pass one)."""
    return {"bootstrap.servers": client} if isinstance(client, str) else dict(client)


def read_all(client: str | dict[str, Any], topic: str, idle: float = 2.0, timeout: float = 180.0) -> list[Any]:
    """Every record of a topic: consume from offset 0 until nothing arrives for `idle` seconds."""
    consumer = Consumer({**_conf(client), "group.id": f"tests-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in clients.partitions_of(consumer, topic)])
        messages: list[Any] = []
        last = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() - last < idle and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(10_000, 0.2) if m.error() is None]
            if batch:
                messages.extend(batch)
                last = time.monotonic()
        return messages
    finally:
        consumer.close()


def partition_ends(client: str | dict[str, Any], topic: str) -> dict[int, int]:
    """{partition: next offset} of what the topic holds, checking offsets are gap-free from 0."""
    ends: dict[int, int] = {}
    counts: dict[int, int] = {}
    for msg in read_all(client, topic):
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)
        counts[msg.partition()] = counts.get(msg.partition(), 0) + 1
    assert ends == counts, f"{topic}: offsets are not contiguous from 0: ends {ends}, counts {counts}"
    return ends


def headers(msg: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in (msg.headers() or [])}


def hides_aborted_records(bootstrap: str) -> bool:
    """Whether the broker hides the records of an aborted transaction from read_committed consumers, as Kafka
    does (measured, not assumed: the embedded broker does not)."""
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    clients.create_topics(clients.admin(CommonSettings(bootstrap_servers=bootstrap), "tests"), [topic], 1)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(30)  # on the broker before the abort
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)
    seen = [m.value() for m in read_all({"bootstrap.servers": bootstrap, "isolation.level": "read_committed"}, topic)]
    assert b"committed" in seen, seen
    return b"aborted" not in seen

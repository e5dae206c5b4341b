"""Helpers shared by the fault-injection and security tests: own brokers, topics, metrics, reading topics."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streamtrain.local.broker import EmbeddedBroker

# Re-exported: the fault tests read topics the same way as the others.
from tests.support.kafka import partition_ends as partition_ends
from tests.support.kafka import read_all as read_all

TOPIC_KEYS = ("TRAIN", "TEST", "METRICS", "MODEL_EVENTS", "DEAD_LETTER")


def topics_env(broker: EmbeddedBroker, partitions: int = 2, **extra: str) -> dict[str, str]:
    """Five fresh topics on `broker` (created with tansu's own client, so TLS brokers work too)."""
    prefix = f"f{uuid.uuid4().hex[:8]}"
    names = {key: f"{prefix}.{key.lower().replace('_', '-')}" for key in TOPIC_KEYS}
    broker.create_topics(list(names.values()), partitions)
    env = {"STREAMTRAIN_BOOTSTRAP_SERVERS": broker.bootstrap}
    env.update({f"STREAMTRAIN_{key}_TOPIC": name for key, name in names.items()})
    env.update(extra)
    return env


def client_conf(env: dict[str, str]) -> dict[str, Any]:
    """librdkafka settings for a test client, from a component env (security settings included)."""
    conf: dict[str, Any] = {"bootstrap.servers": env["STREAMTRAIN_BOOTSTRAP_SERVERS"]}
    mapping = {"STREAMTRAIN_SECURITY_PROTOCOL": "security.protocol", "STREAMTRAIN_SSL_CA_LOCATION": "ssl.ca.location",
               "STREAMTRAIN_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
               "STREAMTRAIN_SSL_KEY_LOCATION": "ssl.key.location"}
    conf.update({option: env[name] for name, option in mapping.items() if name in env})
    return conf


def produce(conf: dict[str, Any], topic: str, records: Iterable[tuple[bytes | None, bytes | None, int]]) -> int:
    """Produce (key, value, partition) records idempotently; returns how many the broker acknowledged."""
    producer = Producer({**conf, "enable.idempotence": True, "linger.ms": 5})
    acked = [0]

    def delivered(err: Any, _msg: Any) -> None:
        assert err is None, err
        acked[0] += 1

    for key, value, partition in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=partition, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    return acked[0]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text; None if absent. Labels given must all match."""
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if not found or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(found.group(3))
    return None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def log_messages(lines: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [line for line in lines if text in str(line.get("msg", ""))]


def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a size-limited tmpfs at path; returns None, or the reason it cannot be done here."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run mount: {exc}"
    if result.returncode != 0:
        return (f"mounting a size-limited tmpfs needs root with CAP_SYS_ADMIN: "
                f"`mount -t tmpfs -o size={size}` failed: {result.stderr.strip()[:200]}")
    return None


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)

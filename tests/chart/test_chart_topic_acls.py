"""The topics the producer's code writes are exactly the topics its KafkaUser may write: no ACL unused, none missing.

The producer runs as in its pod (settings from the rendered env), on a short CSV stream with one bad row, with the
Kafka producer class replaced by a recorder of the topics it is asked to write (acknowledging every record at
once). The other components' topic ACLs are compared with a hand-written list in test_chart_workloads.py."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from chartkit import component_workload, effective_env, of_kind, render


class RecordingProducer:
    """Stands in for confluent_kafka.Producer: every topic has two partitions, every record is acknowledged."""

    written: set[str] = set()

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions={0: None, 1: None})})

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1,
                on_delivery: Any = None, headers: Any = None) -> None:
        RecordingProducer.written.add(topic)
        if on_delivery is not None:
            on_delivery(None, SimpleNamespace(topic=lambda: topic))

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = -1) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def written_topics(docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    from streamtrain.kafka import clients
    from streamtrain.producer import main
    from streamtrain.service import config

    rows = [",".join(["1"] + ["0.5"] * 18)] * 20 + ["1"]  # a row without features: a dead letter
    source = tmp_path / "stream.csv"
    source.write_text("\n".join(rows) + "\n")
    env = effective_env(docs, component_workload(docs, "producer"))["producer"]
    env.update({"STREAMTRAIN_SOURCE": "csv", "STREAMTRAIN_CSV_PATH": str(source), "STREAMTRAIN_COUNT": "0",
                "STREAMTRAIN_PASSES": "1", "STREAMTRAIN_RATE": "0", "STREAMTRAIN_HTTP_PORT": "0"})
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("STREAMTRAIN_")]:
            patch.delenv(name)
        for name, value in env.items():
            if name.endswith(("_FILE", "_LOCATION")):
                stand_in = tmp_path / Path(value).name
                stand_in.write_text("stand-in\n")
                value = str(stand_in)
            patch.setenv(name, str(value))
        patch.setattr(clients, "Producer", RecordingProducer)
        RecordingProducer.written = set()
        summary = main.run(config.load(config.ProducerSettings))
    assert summary["dead_lettered"] == 1, summary
    return set(RecordingProducer.written)


def test_the_producer_may_write_exactly_the_topics_its_code_writes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render({})
    written = written_topics(docs, tmp_path, monkeypatch)
    [user] = [u for u in of_kind(docs, "KafkaUser")
              if u["metadata"]["labels"]["app.kubernetes.io/component"] == "producer"]
    granted = {acl["resource"]["name"] for acl in user["spec"]["authorization"]["acls"]
               if acl["resource"]["type"] == "topic" and "Write" in acl["operations"]}
    assert written == {"streamtrain.train", "streamtrain.test", "streamtrain.dead-letter"}
    assert granted - written == set(), f"ACLs no producer code uses: {sorted(granted - written)}"
    assert written - granted == set(), f"topics the producer writes without an ACL: {sorted(written - granted)}"

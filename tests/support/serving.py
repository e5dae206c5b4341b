"""Factories for the serving tests: versions trained here on known data, input records, the output read back."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer
from sklearn.datasets import load_breast_cancer

from streamtrain import models
from streamtrain.store import model_store
from streamtrain.trainer.learner import Learner
from streamtrain.wire import encode_labels, encode_rows
from tests.support.kafka import headers, read_all


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x.astype(np.float32), y.astype(np.float32)


def publish_trained(base: Path, version: int, x: np.ndarray, y: np.ndarray, flip: bool = False, seed: int = 0,
                    name: str = "streamtrain") -> model_store.Version:
    """A version trained here for 10 passes over (x, y) — on flipped labels when `flip`: a model that got worse."""
    model = models.mlp(x.shape[1], seed=seed)
    learner = Learner(model, 0.01)
    labels = 1 - y if flip else y
    for _ in range(10):
        for start in range(0, len(x), 64):
            learner.step(x[start:start + 64], labels[start:start + 64])
    return model_store.publish(base, name, model, version, {"records_trained": 10 * len(x)}, keep=100,
                               savedmodel=False)


def produce_labelled(bootstrap: str, topic: str, x: np.ndarray, y: np.ndarray) -> None:
    """Test records in the CSV wire format (key = label)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in zip(encode_labels(y), encode_rows(x), strict=True):
        producer.produce(topic, key=key, value=value)
    producer.flush(30)


@dataclass(frozen=True)
class Inputs:
    ids: list[str]  # the keys of the good records, in order
    bad_ids: list[str]


def produce_inputs(bootstrap: str, topic: str, x: np.ndarray, start: int = 0, bad_every: int = 0) -> Inputs:
    """Feature rows keyed `id-<n>`; every `bad_every`-th one malformed (keyed `bad-<n>`)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    ids, bad = [], []
    for i, value in enumerate(encode_rows(x), start=start):
        if bad_every and i % bad_every == bad_every - 1:
            bad.append(f"bad-{i}")
            producer.produce(topic, key=bad[-1].encode(), value=value + b",oops")
        else:
            ids.append(f"id-{i}")
            producer.produce(topic, key=ids[-1].encode(), value=value)
        producer.poll(0)
    producer.flush(30)
    return Inputs(ids, bad)


def read_predictions(bootstrap: str, topic: str, idle: float = 3.0) -> list[dict[str, Any]]:
    """The output topic read with isolation.level=read_committed: each prediction with its key."""
    conf = {"bootstrap.servers": bootstrap, "isolation.level": "read_committed"}
    return [{"key": m.key().decode(), **json.loads(m.value())} for m in read_all(conf, topic, idle=idle)]


def dead_letter_keys(bootstrap: str, topic: str, component: str = "predictor") -> list[str]:
    conf = {"bootstrap.servers": bootstrap, "isolation.level": "read_committed"}
    return [m.key().decode() for m in read_all(conf, topic) if headers(m).get("streamtrain.component") == component]


def repeats(keys: list[str]) -> dict[str, int]:
    return {k: n for k, n in Counter(keys).items() if n > 1}

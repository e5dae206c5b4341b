"""A trainer told which columns are categorical publishes versions that encode them, and holds to its declaration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from confluent_kafka import Producer

from streamtrain import models
from streamtrain.service import loop
from streamtrain.service.config import ConfigError, TrainerSettings
from streamtrain.service.runtime import StopFlag
from streamtrain.store import model_store
from streamtrain.trainer.main import Trainer
from streamtrain.wire import encode_labels, encode_rows

pytestmark = pytest.mark.integration

RECORDS = 1500


def fields(env: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("STREAMTRAIN_").lower(): v for k, v in env.items()}


def produce(topics: dict[str, str]) -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(1.0, 2.0, (RECORDS, 4)).astype(np.float32)
    x[:, 2] = rng.integers(0, 8, RECORDS)  # a code: 0-7
    y = ((x[:, 0] - 1.0) / 2.0 + 1.5 * np.where(np.isin(x[:, 2], [0, 3, 5, 6]), 1, -1) > 0).astype(np.float32)
    source = Producer({"bootstrap.servers": topics["STREAMTRAIN_BOOTSTRAP_SERVERS"], "enable.idempotence": True})
    for i, (key, value) in enumerate(zip(encode_labels(y), encode_rows(x), strict=True)):
        source.produce(topics["STREAMTRAIN_TRAIN_TOPIC"], key=key, value=value, partition=i % 2)
    assert source.flush(30) == 0


def train(topics: dict[str, str], tmp_path: Path, run: str, categorical: str) -> dict[str, object]:
    settings = TrainerSettings(**fields(topics), model_dir=tmp_path / run / "models", http_port=0,
                               checkpoint_dir=tmp_path / run / "ckpt", batch_size=50, publish_every_batches=10,
                               max_records=RECORDS, model="mlp", categorical_columns=categorical)
    stop = StopFlag()
    return loop.run(Trainer(settings, stop), settings, stop)


def test_declared_columns_are_encoded_in_every_version_and_kept_across_restarts(topics: dict[str, str],
                                                                                tmp_path: Path) -> None:
    produce(topics)
    trained = train(topics, tmp_path, "a", "2:8")
    assert trained["records_trained"] == RECORDS and trained["last_version"] >= 2
    newest = model_store.newest(tmp_path / "a" / "models", "streamtrain")
    assert newest is not None and newest.manifest["categorical_columns"] == {"2": 8}
    model, _ = model_store.load(newest.path, 4)
    assert models.categorical_columns(model) == {2: 8}
    layer = models.standardizer(model)
    assert layer is not None and float(layer.count.numpy()) == RECORDS
    assert (float(layer.mean.numpy()[2]), float(layer.variance.numpy()[2])) == (0.0, 1.0)  # codes: no statistics
    rows = np.array([[1, 0, code, 2] for code in (0, 3, 7, 8, -1, 2.0)], np.float32)
    served = tf.saved_model.load(str(newest.path))  # the final version carries the SavedModel
    # The same answers to float32 rounding (the graph's fused kernels round differently from eager ones).
    np.testing.assert_allclose(served.serve(tf.constant(rows)).numpy(), model(rows).numpy(), rtol=1e-6)
    scores = model(rows).numpy()[:, 0]
    assert scores[3] == scores[4] and scores[2] != scores[3]  # codes 8 and -1 are both "other"; 7 is not

    # The checkpoint was trained with 2:8: restarting without the declaration (or another one) is refused.
    with pytest.raises(ConfigError, match=r"^--categorical-columns \(STREAMTRAIN_CATEGORICAL_COLUMNS\): the "
                                          r"checkpoint's model was trained with 2:8"):
        train(topics, tmp_path, "a", "")
    # A column beyond the records' width fails as the first records tell the width.
    with pytest.raises(ConfigError, match=r"^--categorical-columns .*: categorical column 7 is beyond the 4 "):
        train(topics, tmp_path, "b", "7:3")

"""The benchmark's tutorial loop fits mini datasets of the size the tutorial's own dataset delivers.

The TensorFlow Kafka tutorial builds its KafkaBatchIODataset without `batch.num.messages`; how many
records each mini dataset then holds is tensorflow-io's business, and its kernel logs the number when
the dataset is built (no broker needed: the consumer connects lazily).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from benchmarks.suite import TUTORIAL_MINI_RECORDS

pytestmark = [pytest.mark.integration, pytest.mark.tfio]

# The tutorial's online dataset, as published (the server is a closed port: nothing is fetched).
BUILD = """
import tensorflow_io as tfio
tfio.experimental.streaming.KafkaBatchIODataset(
    topics=["susy-train"], group_id="cgonline", servers="127.0.0.1:9", stream_timeout=30000,
    configuration=["session.timeout.ms=7000", "max.poll.interval.ms=8000", "auto.offset.reset=earliest"])
"""


def test_mini_dataset_size_is_tensorflow_ios_effective_batch_num_messages() -> None:
    run = subprocess.run([sys.executable, "-c", BUILD], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert run.returncode == 0, run.stderr[-2000:]
    logged = re.findall(r"max num of messages per batch: (\d+)", run.stderr)
    assert logged, run.stderr[-2000:]
    assert int(logged[-1]) == TUTORIAL_MINI_RECORDS

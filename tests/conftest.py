"""Shared fixtures: the real embedded broker, fresh topics per test, component processes."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamtrain.kafka import clients
from streamtrain.local.broker import BrokerError, EmbeddedBroker, tansu_binary
from streamtrain.service.config import CommonSettings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"


TFIO_MISSING = importlib.util.find_spec("tensorflow_io") is None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked tfio skip where tensorflow-io is not installed (the core environment)."""
    if TFIO_MISSING:
        skip = pytest.mark.skip(reason="tensorflow-io is not installed: the tfio extra, tested by make test-tfio")
        for item in items:
            if item.get_closest_marker("tfio") is not None:
                item.add_marker(skip)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kube-context", default=None,
                     help="kube context for tests/e2e (default: STREAMTRAIN_KUBE_CONTEXT or the current context)")


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One tansu broker for the session (tests isolate themselves with their own topics)."""
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"embedded broker missing: {exc}")
    with EmbeddedBroker().start() as running:
        yield running


@pytest.fixture
def topics(broker: EmbeddedBroker) -> dict[str, str]:
    """Fresh topics (2 partitions each) and the env that points components at them."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {
        "STREAMTRAIN_BOOTSTRAP_SERVERS": broker.bootstrap,
        "STREAMTRAIN_TRAIN_TOPIC": f"{prefix}.train",
        "STREAMTRAIN_TEST_TOPIC": f"{prefix}.test",
        "STREAMTRAIN_METRICS_TOPIC": f"{prefix}.metrics",
        "STREAMTRAIN_MODEL_EVENTS_TOPIC": f"{prefix}.model-events",
        "STREAMTRAIN_DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "STREAMTRAIN_CONTROL_TOPIC": f"{prefix}.control",
        "STREAMTRAIN_MODEL_FILES_TOPIC": f"{prefix}.model-files",
        "STREAMTRAIN_INPUT_TOPIC": f"{prefix}.input",
        "STREAMTRAIN_OUTPUT_TOPIC": f"{prefix}.predictions",
    }
    settings = common_settings(env)
    clients.create_topics(clients.admin(settings, "tests"), clients.topic_names(settings), partitions=2,
                          configs=clients.topic_configs(settings))
    return env


def common_settings(env: dict[str, str]) -> CommonSettings:
    return CommonSettings(**{k.removeprefix("STREAMTRAIN_").lower(): v for k, v in env.items()
                             if k.startswith("STREAMTRAIN_") and k.removeprefix("STREAMTRAIN_").lower()
                             in CommonSettings.model_fields})


@pytest.fixture
def clean_streamtrain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read STREAMTRAIN_* variables; a test that uses this starts from none of them (processes get theirs
    explicitly). The unit and quality tests use it for every test."""
    for name in list(os.environ):
        if name.startswith("STREAMTRAIN_"):
            monkeypatch.delenv(name)


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder kept after the run (CI can upload it): plots, screenshots, logs."""
    path = ARTIFACTS / request.node.name.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path

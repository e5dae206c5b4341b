"""Fixtures of the fault-injection tests: a broker of their own when they stop, freeze or kill it."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from streamtrain.local.broker import BrokerError, EmbeddedBroker, tansu_binary


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker for this test alone (the session broker is shared and must not be frozen or killed)."""
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"embedded broker missing: {exc}")
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        if broker.process is not None and broker.process.poll() is None:
            broker.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
        broker.stop()

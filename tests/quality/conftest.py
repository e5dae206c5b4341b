"""Quality tests: drift detection, adaptation, the live page, the report and the dashboard."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _clean_streamtrain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read STREAMTRAIN_* variables; tests start from none of them (processes get theirs explicitly)."""
    for name in list(os.environ):
        if name.startswith("STREAMTRAIN_"):
            monkeypatch.delenv(name)

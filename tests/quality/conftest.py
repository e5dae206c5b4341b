"""Quality tests (drift detection, adaptation, the live page, the report, the dashboard) start from no
STREAMTRAIN_* variable of the caller's environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_streamtrain_env(clean_streamtrain_env: None) -> None:
    """(the shared fixture, for every test here)"""

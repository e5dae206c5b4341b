"""Static chart tests: everything here runs without a cluster (Helm SDK, offline schemas).

Renders are cached in chartkit; every fixture hands out a fresh copy, so a test may modify it."""

from __future__ import annotations

from typing import Any

import pytest
from chartkit import VALUE_SETS, render


@pytest.fixture(params=sorted(VALUE_SETS), scope="session")
def value_set(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, VALUE_SETS[request.param]


@pytest.fixture
def rendered(value_set: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return render(value_set[1])


@pytest.fixture
def default_docs() -> list[dict[str, Any]]:
    return render({})

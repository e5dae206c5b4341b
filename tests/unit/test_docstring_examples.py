"""The examples in the docstrings of the small public pieces run, and say what they print."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import streamtrain.wire

MODULES = sorted(f"streamtrain.wire.{m.name}" for m in pkgutil.iter_modules(streamtrain.wire.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_every_wire_format_module_has_examples() -> None:
    for name in ("csv", "f32", "f32_block", "labels", "base", "batch"):
        module = importlib.import_module(f"streamtrain.wire.{name}")
        assert doctest.DocTestFinder().find(module)[0].examples, f"{name} has no docstring example"

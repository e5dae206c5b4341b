"""The examples in the docstrings of the small public pieces run, and say what they print."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import streamtrain.producer.generators
import streamtrain.trainer.drift
import streamtrain.wire

PACKAGES = [streamtrain.wire, streamtrain.trainer.drift, streamtrain.producer.generators]
SINGLE = ["streamtrain.kubectl.commands", "streamtrain.store.lock", "streamtrain.store.model_store",
          "streamtrain.trainer.assignment", "streamtrain.trainer.failures", "streamtrain.trainer.operations",
          "streamtrain.trainer.reporting", "streamtrain.trainer.schedule"]
MODULES = sorted([p.__name__ for p in PACKAGES] + SINGLE
                 + [f"{p.__name__}.{m.name}" for p in PACKAGES for m in pkgutil.iter_modules(p.__path__)])


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


@pytest.mark.parametrize("name", [m for m in MODULES if m != "streamtrain.wire"])
def test_every_module_has_examples(name: str) -> None:
    found = doctest.DocTestFinder().find(importlib.import_module(name))
    assert any(test.examples for test in found), f"{name} has no docstring example"

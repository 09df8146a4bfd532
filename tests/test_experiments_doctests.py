"""The docstring examples of the experiments' packages run (pytest's --doctest-modules covers only
``unfoldconv``; ``experiments/`` is not a test path)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import benchmarking
import training

MODULES = sorted(
    f"{package.__name__}.{info.name}"
    for package in (training, benchmarking)
    for info in pkgutil.iter_modules(package.__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_some_examples_exist():
    attempted = sum(doctest.testmod(importlib.import_module(n)).attempted for n in MODULES)
    assert attempted >= 2

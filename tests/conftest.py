"""Shared fixtures: every device test runs on CPU, and on CUDA when one is present.

Also a collection check: a ``parametrize`` whose parameter list came out empty (a generator used
up, a filter that matches nothing) makes pytest skip the test quietly ("got empty parameter
set"); here it fails the run instead.
"""

from __future__ import annotations

import pytest
import torch

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]

#: how pytest words the skip reason of an empty parameter set (``_pytest.mark.structures``)
EMPTY_PARAMETER_SET = "got empty parameter set"


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def _empty_parameter_set(item) -> bool:
    return any(
        mark.name in ("skip", "xfail")
        and str(mark.kwargs.get("reason", mark.args[0] if mark.args else "")).startswith(
            EMPTY_PARAMETER_SET
        )
        for mark in item.iter_markers()
    )


@pytest.hookimpl(tryfirst=True)  # before pytest's own skip marker turns it into a skip
def pytest_runtest_setup(item):
    """A parametrised test whose parameter set is empty fails (with and without xdist)."""
    if _empty_parameter_set(item):
        pytest.fail(
            f"{item.nodeid}: parametrize collected an empty parameter set (the case list is "
            "empty: a used-up generator or a filter matching nothing)",
            pytrace=False,
        )

"""The benchmark's curvature group: every implementation of a case computes the same thing."""

from __future__ import annotations

import pytest
import torch

from benchmarking.curvature_cases import curvature_cases


@pytest.fixture(scope="module")
def cases():
    return curvature_cases(torch.device("cpu"), [2], ["conv8"], quick=True)


def test_cases_cover_every_op_and_the_volume(cases):
    series = {case.series for case in cases}
    assert series == {"A-expand b2", "A-reduce b2", "grad b2", "norm b2"}
    assert any(" 3d " in case.name for case in cases)
    assert len({case.name for case in cases}) == len(cases)  # the tables key rows by name


def test_implementations_agree(cases):
    for case in cases:
        results = {impl: factory("forward")() for impl, factory in case.impls.items()}
        ours = results.pop("unfoldconv")
        assert results, case.name  # something to compare with
        for impl, result in results.items():
            # float32 sums over up to a few thousand terms, in different orders
            torch.testing.assert_close(
                ours.reshape(-1), result.reshape(-1), rtol=1e-4, atol=1e-4,
                msg=lambda m, c=case.name, i=impl: f"{c} vs {i}: {m}",
            )  # fmt: skip

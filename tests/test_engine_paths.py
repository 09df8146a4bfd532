"""Every engine path (direct, two-stage, batch-inner) agrees with the loop references.

The engine picks a path by shape (``choose_path``); here each path is forced in turn, so
both stay covered whatever the heuristic picks.
"""

from __future__ import annotations

import pytest
import torch

import unfoldconv._engine as engine
from tests.reference import fold_loop, unfold_loop
from unfoldconv import fold, unfold, unfold_transpose
from unfoldconv._args import make_geometry

PATHS = {
    "direct": lambda input_size, geometry, batch_channels: "direct",
    "two-stage": lambda input_size, geometry, batch_channels: (
        "two-stage" if geometry.dim >= 2 else "direct"
    ),
    "batch-inner": lambda input_size, geometry, batch_channels: "batch-inner",
}

# (id, input shape, kwargs); d >= 2 so that the two-stage path applies, plus 1-d
CASES = [
    ("2d-k3-p1", (2, 3, 7, 6), {"kernel_size": 3, "padding": 1}),
    ("2d-k3-s2-p1", (2, 3, 9, 8), {"kernel_size": 3, "padding": 1, "stride": 2}),
    ("2d-k2-s3", (1, 2, 9, 9), {"kernel_size": 2, "stride": 3}),
    ("2d-k3-d2-s2", (1, 2, 11, 7), {"kernel_size": 3, "dilation": (2, 1), "stride": (2, 1)}),
    (
        "2d-k4-d3-s2-p3",
        (1, 2, 12, 10),
        {"kernel_size": (4, 2), "dilation": 3, "stride": 2, "padding": 3},
    ),
    ("2d-k5-s3-p4", (1, 1, 13, 8), {"kernel_size": (5, 3), "stride": (3, 2), "padding": (4, 1)}),
    ("3d-k3-p1-s2", (1, 2, 6, 5, 7), {"kernel_size": 3, "padding": 1, "stride": (2, 1, 2)}),
    ("4d-k2", (1, 1, 4, 3, 4, 3), {"kernel_size": 2, "padding": (1, 0, 1, 0)}),
    ("1d-k3-s2-p2", (3, 2, 11), {"kernel_size": 3, "stride": 2, "padding": 2}),
]


@pytest.fixture(params=list(PATHS), ids=list(PATHS))
def path(request, monkeypatch):
    monkeypatch.setattr(engine, "choose_path", PATHS[request.param])
    return request.param


def _tuples(kwargs, d):
    k = kwargs["kernel_size"]
    return {**kwargs, "kernel_size": (k,) * d if isinstance(k, int) else k}


@pytest.mark.parametrize("shape, kwargs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_unfold(path, device, shape, kwargs):
    x = torch.randn(shape, dtype=torch.float64, device=device)
    assert torch.equal(unfold(x, **kwargs), unfold_loop(x, **kwargs))


@pytest.mark.parametrize("shape, kwargs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fold(path, device, shape, kwargs):
    kwargs = _tuples(kwargs, len(shape) - 2)
    columns = torch.randn_like(
        unfold(torch.zeros(shape, dtype=torch.float64, device=device), **kwargs)
    )
    torch.testing.assert_close(
        fold(columns, shape[2:], **kwargs), fold_loop(columns, shape[2:], **kwargs)
    )


@pytest.mark.parametrize("shape, kwargs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_unfold_transpose_and_its_gradient(path, shape, kwargs):
    """The flipped layout: both paths equal, and the backward (a flipped fold) is the adjoint."""
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    kwargs = {k: v for k, v in kwargs.items() if k != "padding"}
    out = unfold_transpose(x, **kwargs)
    grad = torch.randn_like(out)
    (x_grad,) = torch.autograd.grad(out, x, grad)
    torch.testing.assert_close((out * grad).sum(), (x * x_grad).sum())
    with torch.no_grad():
        engine.choose_path = PATHS["direct"]
        assert torch.equal(out, unfold_transpose(x, **kwargs))


@pytest.mark.parametrize("shape, kwargs", [c[1:] for c in CASES[:3]], ids=[c[0] for c in CASES[:3]])
def test_gather_into_workspace(path, shape, kwargs):
    x = torch.randn(shape)
    expected = unfold(x, **kwargs)
    workspace = torch.empty(expected.numel() + 7)[: expected.numel()]
    geometry = make_geometry(
        len(shape) - 2,
        kwargs["kernel_size"],
        kwargs.get("dilation", 1),
        kwargs.get("padding", 0),
        kwargs.get("stride", 1),
    )
    result = engine.gather(x, geometry, out=workspace)
    assert torch.equal(result, expected)
    assert result.data_ptr() == workspace.data_ptr()

"""Engine internals the layers rely on: gathering into a workspace, and the flipped layout."""

from __future__ import annotations

import pytest
import torch

import unfoldconv._engine as engine
from tests.helpers import params
from unfoldconv import unfold, unfold_transpose
from unfoldconv._args import make_geometry

# (id, input shape, kwargs)
CASES = [
    ("2d-k3-p1", (2, 3, 7, 6), {"kernel_size": 3, "padding": 1}),
    ("2d-k3-s2-p1", (2, 3, 9, 8), {"kernel_size": 3, "padding": 1, "stride": 2}),
    ("2d-k2-s3", (1, 2, 9, 9), {"kernel_size": 2, "stride": 3}),
    ("3d-k3-p1-s2", (1, 2, 6, 5, 7), {"kernel_size": 3, "padding": 1, "stride": (2, 1, 2)}),
]


@pytest.mark.parametrize("shape, kwargs", params(CASES))
def test_gather_into_workspace(shape, kwargs):
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


@pytest.mark.parametrize("shape, kwargs", params(CASES))
def test_unfold_transpose_backward_is_its_adjoint(shape, kwargs):
    """The flipped layout's backward (a flipped fold) satisfies <J v, g> == <v, J^T g>."""
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    kwargs = {k: v for k, v in kwargs.items() if k != "padding"}
    out = unfold_transpose(x, **kwargs)
    grad = torch.randn_like(out)
    (x_grad,) = torch.autograd.grad(out, x, grad)
    torch.testing.assert_close((out * grad).sum(), (x * x_grad).sum())


def test_apply_function_is_function_apply():
    """The direct C++ apply builds the same values, graph node and gradients (first and second
    order) as ``Function.apply``, and hands over to it inside ``torch.func`` transforms."""
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    geometry = make_geometry(2, 3, 1, 1, 2)  # d, kernel, dilation, padding, stride
    ours = engine.apply_function(engine.Im2Col, x, geometry)
    reference = engine.Im2Col.apply(x, geometry)
    assert torch.equal(ours, reference) and type(ours.grad_fn) is type(reference.grad_fn)
    grad = torch.randn_like(ours, requires_grad=True)
    (g_ours,) = torch.autograd.grad(ours, x, grad, create_graph=True)
    (g_ref,) = torch.autograd.grad(reference, x, grad, create_graph=True)
    assert torch.equal(g_ours, g_ref)
    assert torch.equal(*(torch.autograd.grad(g.sum(), grad)[0] for g in (g_ours, g_ref)))
    per_sample = torch.func.vmap(
        lambda xi: engine.apply_function(engine.Im2Col, xi[None], geometry)
    )
    assert torch.equal(per_sample(x.detach())[:, 0], reference.detach())

"""Gradients of every order: gradcheck and gradgradcheck in float64, and backward identities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from tests.helpers import as_tuple, params
from tests.reference import fold_loop, unfold_loop
from unfoldconv import fold, unfold, unfold_transpose

# (id, input shape, kwargs) small enough for numerical Jacobians
UNFOLD_CASES = [
    ("1d-k3-p1-s2", (2, 2, 7), {"kernel_size": 3, "padding": 1, "stride": 2}),
    ("2d-k2-d2-p1", (1, 2, 5, 4), {"kernel_size": 2, "dilation": 2, "padding": 1}),
    ("2d-same", (1, 2, 4, 5), {"kernel_size": (2, 3), "padding": "same"}),
    ("3d-k2-s2-p1", (1, 1, 3, 4, 3), {"kernel_size": 2, "padding": 1, "stride": (2, 1, 2)}),
]
TRANSPOSE_CASES = [
    ("1d-k3-s2-op1", (1, 2, 4), {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),
    ("2d-k2-d2", (1, 2, 3, 3), {"kernel_size": 2, "dilation": 2, "stride": 2}),
]


# "auto" folds these small shapes with the compiled CPU fold (where numba is installed);
# "torch" forces the torch route's scatter
BACKENDS = ["auto", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, kwargs", params(UNFOLD_CASES))
def test_unfold_gradcheck_and_gradgradcheck(shape, kwargs, backend):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    with unfoldconv.backend(backend):
        assert torch.autograd.gradcheck(lambda t: unfold(t, **kwargs), x)
        assert torch.autograd.gradgradcheck(lambda t: unfold(t, **kwargs), x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, kwargs", params(UNFOLD_CASES))
def test_fold_gradcheck_and_gradgradcheck(shape, kwargs, backend):
    spatial = shape[2:]
    columns_shape = unfold(torch.zeros(shape), **kwargs).shape
    kwargs = {**kwargs, "kernel_size": as_tuple(kwargs["kernel_size"], len(spatial))}
    columns = torch.randn(columns_shape, dtype=torch.float64, requires_grad=True)
    with unfoldconv.backend(backend):
        assert torch.autograd.gradcheck(lambda t: fold(t, spatial, **kwargs), columns)
        assert torch.autograd.gradgradcheck(lambda t: fold(t, spatial, **kwargs), columns)


@pytest.mark.parametrize("shape, kwargs", params(TRANSPOSE_CASES))
def test_unfold_transpose_gradcheck_and_gradgradcheck(shape, kwargs):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: unfold_transpose(t, **kwargs), x)
    assert torch.autograd.gradgradcheck(lambda t: unfold_transpose(t, **kwargs), x)


def test_third_order_gradient():
    """d^3/dx^3 of sum(unfold(x)**4) = 24 * fold(unfold(x)), done through autograd three times."""
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    kwargs = {"kernel_size": 2, "padding": 1}
    (g1,) = torch.autograd.grad(unfold(x, **kwargs).pow(4).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
    (g3,) = torch.autograd.grad(g2.sum(), x)
    expected = 24 * fold_loop(unfold_loop(x.detach(), **kwargs), (4, 4), **kwargs)
    torch.testing.assert_close(g3, expected)
    torch.testing.assert_close(g3, 24 * fold(unfold(x.detach(), **kwargs), (4, 4), **kwargs))


def test_backward_of_unfold_is_fold(device):
    """The gradient against F.unfold's and the loops' (references), and equal to our fold."""
    x = torch.randn(2, 3, 6, 7, device=device, requires_grad=True)
    kwargs = {"kernel_size": 3, "padding": 1, "stride": 2}
    out = unfold(x, **kwargs)
    grad = torch.randn_like(out)
    out.backward(grad)
    (torch_grad,) = torch.autograd.grad(F.unfold(x, **kwargs), x, grad)
    torch.testing.assert_close(x.grad, torch_grad)
    torch.testing.assert_close(x.grad.cpu(), fold_loop(grad.cpu(), (6, 7), **kwargs))
    assert torch.equal(x.grad, fold(grad, (6, 7), **kwargs))  # the identity: backward is fold

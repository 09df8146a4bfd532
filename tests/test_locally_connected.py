"""locally_connected / LocallyConnectedNd: slow loop reference, tied weights = conv, errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import unfoldconv
from unfoldconv.layers import (
    LocallyConnected1d,
    LocallyConnected2d,
    LocallyConnected3d,
    LocallyConnectedNd,
)

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# (id, d, in_channels, out_channels, spatial, kernel, kwargs)
CASES = [
    ("1d", 1, 3, 4, (9,), (3,), {}),
    ("2d", 2, 3, 4, (6, 7), (3, 2), {}),
    ("2d-stride-pad", 2, 2, 3, (7, 6), (3, 3), {"stride": 2, "padding": 1}),
    ("2d-groups-dilation", 2, 4, 6, (7, 7), (2, 2), {"groups": 2, "dilation": 2}),
    ("2d-same", 2, 2, 2, (5, 4), (3, 2), {"padding": "same"}),
    ("3d", 3, 2, 3, (4, 5, 4), (2, 3, 2), {"padding": (0, 1, 1)}),
]
IDS = [c[0] for c in CASES]


def _loop_reference(x, weight, bias, d, kwargs):
    """One torch conv per output position, keeping only that position: slow and obvious."""
    out_size = weight.shape[:d]
    output = torch.empty(x.shape[0], weight.shape[d], *out_size, dtype=x.dtype)
    for position in itertools.product(*(range(n) for n in out_size)):
        full = TORCH_CONV[d](x, weight[position], None, **kwargs)
        output[(slice(None), slice(None), *position)] = full[(slice(None), slice(None), *position)]
    return output + bias


def _weights(d, c_in, c_out, spatial, kernel, kwargs):
    groups = kwargs.get("groups", 1)
    probe = torch.zeros(1, c_in, *spatial, dtype=torch.float64)
    conv_weight = torch.zeros(c_out, c_in // groups, *kernel, dtype=torch.float64)
    out_size = TORCH_CONV[d](probe, conv_weight, **kwargs).shape[2:]
    weight = torch.randn(*out_size, c_out, c_in // groups, *kernel, dtype=torch.float64)
    bias = torch.randn(c_out, *out_size, dtype=torch.float64)
    return weight, bias


@pytest.mark.parametrize(
    ("d", "c_in", "c_out", "spatial", "kernel", "kwargs"), [c[1:] for c in CASES], ids=IDS
)
@pytest.mark.parametrize("workspace_bytes", [1, None], ids=["1-sample-chunks", "default"])
def test_matches_loop_reference_with_gradients(
    d, c_in, c_out, spatial, kernel, kwargs, workspace_bytes
):
    weight, bias = _weights(d, c_in, c_out, spatial, kernel, kwargs)
    x = torch.randn(3, c_in, *spatial, dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    refs = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    out = unfoldconv.locally_connected(*inputs, **kwargs, workspace_bytes=workspace_bytes)
    expected = _loop_reference(*refs, d, kwargs)
    assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    for ours, ref in zip(inputs, refs):
        assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize(
    ("d", "c_in", "c_out", "spatial", "kernel", "kwargs"), [c[1:] for c in CASES], ids=IDS
)
def test_tied_weights_equal_conv(d, c_in, c_out, spatial, kernel, kwargs):
    weight, _ = _weights(d, c_in, c_out, spatial, kernel, kwargs)
    kernel_weight = weight[(0,) * d]
    tied = kernel_weight.expand_as(weight)  # the same kernel at every position
    x = torch.randn(2, c_in, *spatial, dtype=torch.float64)
    assert_close(
        unfoldconv.locally_connected(x, tied, **kwargs), TORCH_CONV[d](x, kernel_weight, **kwargs)
    )


def test_layer_shapes_init_and_padding_mode():
    torch.manual_seed(0)
    layer = LocallyConnected2d(4, 6, (8, 8), 3, padding=1, padding_mode="circular")
    assert layer.weight.shape == (8, 8, 6, 4, 3, 3)
    assert layer.bias.shape == (6, 8, 8)
    bound = 1 / (4 * 9) ** 0.5
    assert layer.weight.abs().max() <= bound
    assert layer.weight.abs().max() > 0.9 * bound
    x = torch.randn(2, 4, 8, 8)
    tied = LocallyConnected2d(4, 6, (8, 8), 3, padding=1, padding_mode="circular")
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular")
    with torch.no_grad():
        tied.weight.copy_(conv.weight.expand_as(tied.weight))
        tied.bias.copy_(conv.bias.view(6, 1, 1).expand(6, 8, 8))
    # float32: a GEMM and torch's conv sum 36 products in different orders
    assert_close(tied(x), conv(x), rtol=1e-5, atol=1e-5)
    assert LocallyConnected1d(2, 3, 5, 2)(torch.randn(2, 5)).shape == (3, 4)
    assert LocallyConnected3d(2, 3, 4, 2)(torch.randn(1, 2, 4, 4, 4)).shape == (1, 3, 3, 3, 3)
    assert LocallyConnectedNd(2, 3, (4, 4, 4, 4), 3)(torch.randn(1, 2, 4, 4, 4, 4)).shape == (
        1, 3, 2, 2, 2, 2,
    )  # fmt: skip


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)

    def op(x, w, b):
        return unfoldconv.locally_connected(x, w, b, stride=(2, 1), workspace_bytes=1)

    assert torch.autograd.gradcheck(op, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x, w, b), fast_mode=True)


BAD = [
    (
        "wrong-spatial-size",
        lambda: LocallyConnected2d(3, 4, (8, 8), 3)(torch.randn(1, 3, 9, 8)),
        "input_size=\\(8, 8\\)",
    ),
    (
        "functional-wrong-size",
        lambda: unfoldconv.locally_connected(
            torch.randn(1, 3, 9, 8), torch.randn(6, 6, 4, 3, 3, 3)
        ),
        "out_spatial",
    ),
    (
        "channels",
        lambda: LocallyConnected2d(3, 4, (8, 8), 3)(torch.randn(1, 2, 8, 8)),
        "in_channels=3",
    ),
    (
        "bias",
        lambda: unfoldconv.locally_connected(
            torch.randn(1, 3, 8, 8), torch.randn(6, 6, 4, 3, 3, 3), torch.randn(4)
        ),
        "bias must have shape",
    ),
    (
        "weight-dims",
        lambda: unfoldconv.locally_connected(torch.randn(1, 3, 8, 8), torch.randn(6, 4, 3, 3, 3)),
        "weight must be",
    ),
    ("groups", lambda: LocallyConnected2d(3, 4, (8, 8), 3, groups=2), "divisible by groups"),
    ("no-dim", lambda: LocallyConnectedNd(3, 4, 8, 3), "dim"),
    ("padding-mode", lambda: LocallyConnected2d(3, 4, 8, 3, padding_mode="wrap"), "padding_mode"),
    ("too-small", lambda: LocallyConnected2d(3, 4, 2, 3), "input_size"),
]


@pytest.mark.parametrize(("call", "match"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""locally_connected / LocallyConnectedNd: slow loop reference, tied weights = conv, errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import unfoldconv
from tests.helpers import params
from tests.reference import locally_connected_loop
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


@pytest.mark.parametrize(("d", "c_in", "c_out", "spatial", "kernel", "kwargs"), params(CASES))
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


@pytest.mark.parametrize(("d", "c_in", "c_out", "spatial", "kernel", "kwargs"), params(CASES))
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


# (id, layer, input): the 1d (unbatched), 3d and 4d layers against the loops
LAYERS = [
    ("1d-unbatched", lambda: LocallyConnected1d(2, 3, 5, 2, dtype=torch.float64), (2, 5)),
    ("3d", lambda: LocallyConnected3d(2, 3, 4, 2, dtype=torch.float64), (1, 2, 4, 4, 4)),
    (
        "4d",
        lambda: LocallyConnectedNd(2, 3, (4, 4, 4, 4), 3, dtype=torch.float64),
        (1, 2, 4, 4, 4, 4),
    ),
]


@pytest.mark.parametrize(("make", "shape"), params(LAYERS))
def test_layers_match_loop_reference(make, shape):
    layer = make()
    x = torch.randn(shape, dtype=torch.float64)
    batched = x if x.dim() == layer.weight.dim() // 2 + 1 else x.unsqueeze(0)
    out = layer(x)
    expected = locally_connected_loop(batched, layer.weight, layer.bias).reshape(out.shape)
    assert_close(out, expected)


@pytest.mark.parametrize("stride", [1, 2], ids=["stride-1", "stride-2"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_modes_with_stride(padding_mode, stride):
    """Each padding mode pads as F.pad does, before the windows (any stride); gradients too."""
    torch.manual_seed(0)
    padding = (1, 2)  # asymmetric: a mode that mixes up the dims pads the wrong amounts
    out_size = tuple((size + 2 * p - 3) // stride + 1 for size, p in zip((7, 6), padding))
    layer = LocallyConnected2d(
        3, 4, (7, 6), 3, stride=stride, padding=padding, padding_mode=padding_mode,
        dtype=torch.float64,
    )  # fmt: skip
    assert layer.weight.shape[:2] == out_size
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    if padding_mode == "zeros":
        padded, loop_padding = x, padding
    else:  # F.pad takes (left, right, top, bottom): the last dim first
        padded, loop_padding = F.pad(x, (2, 2, 1, 1), mode=padding_mode), 0
    expected = locally_connected_loop(
        padded, layer.weight, layer.bias, stride=stride, padding=loop_padding
    )
    out = layer(x)
    assert_close(out, expected)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, layer.weight, layer.bias), grad)
    reference = torch.autograd.grad(expected, (x, layer.weight, layer.bias), grad)
    for name, g, g_ref in zip(("input", "weight", "bias"), ours, reference):
        assert_close(g, g_ref, msg=lambda m, name=name: f"{name} grad: {m}")


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)

    def op(x, w, b):
        return unfoldconv.locally_connected(x, w, b, stride=(2, 1), workspace_bytes=1)

    assert torch.autograd.gradcheck(op, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x, w, b), fast_mode=True)


def test_double_backward_with_only_the_bias_requiring_grad():
    """The fuzzing defect: create_graph with no input or weight gradient wanted."""
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w = torch.randn(4, 4, 5, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(5, 4, 4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(unfoldconv.locally_connected(x, w, b).sum(), b, create_graph=True)
    assert_close(grad, torch.full_like(b, 2.0))  # d sum / d bias = N at every entry
    layer = LocallyConnected2d(3, 5, (6, 6), 3, dtype=torch.float64)
    layer.weight.requires_grad_(False)  # a frozen weight
    (grad,) = torch.autograd.grad(layer(x).square().sum(), layer.bias, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), layer.bias)
    assert_close(second, torch.full_like(layer.bias, 2.0 * 2))  # d/db sum(2 * out) = 2 * N


def test_double_backward_matches_conv_with_tied_weights():
    """Second derivatives through the chunked engine equal torch's conv's (one shared rule)."""
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    grads = []
    for op in (
        lambda: unfoldconv.locally_connected(x, kernel.expand(3, 3, 3, 2, 3, 3), workspace_bytes=1),
        lambda: F.conv2d(x, kernel),
    ):
        (g,) = torch.autograd.grad(op().square().sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(g.square().sum(), (x, kernel)))
    for ours, expected in zip(*grads):
        assert_close(ours, expected)


# (id, call, regex naming the argument and the value received)
BAD = [
    (
        "wrong-spatial-size",
        lambda: LocallyConnected2d(3, 4, (8, 8), 3)(torch.randn(1, 3, 9, 8)),
        r"input spatial size must be input_size=\(8, 8\) .*got input of shape \(1, 3, 9, 8\)",
    ),
    (
        "functional-wrong-size",
        lambda: unfoldconv.locally_connected(
            torch.randn(1, 3, 9, 8), torch.randn(6, 6, 4, 3, 3, 3)
        ),
        r"input of spatial size \(9, 8\) gives \(7, 6\) .*out_spatial=\(6, 6\)",
    ),
    (
        "channels",
        lambda: LocallyConnected2d(3, 4, (8, 8), 3)(torch.randn(1, 2, 8, 8)),
        r"input must have 3 channels .*got input with 2 channels",
    ),
    (
        "bias",
        lambda: unfoldconv.locally_connected(
            torch.randn(1, 3, 8, 8), torch.randn(6, 6, 4, 3, 3, 3), torch.randn(4)
        ),
        r"bias must have shape \(4, 6, 6\), got bias of shape \(4,\)",
    ),
    (
        "weight-dims",
        lambda: unfoldconv.locally_connected(torch.randn(1, 3, 8, 8), torch.randn(6, 4, 3, 3, 3)),
        r"weight must be \(\*out_spatial, C_out, C_in / groups, \*kernel_size\).* got weight "
        r"of shape \(6, 4, 3, 3, 3\)",
    ),
    (
        "groups",
        lambda: LocallyConnected2d(3, 4, (8, 8), 3, groups=2),
        r"in_channels must be divisible by groups=2, got in_channels=3",
    ),
    (
        "no-dim",
        lambda: LocallyConnectedNd(3, 4, 8, 3),
        r"LocallyConnectedNd needs dim .*got dim=None with input_size=8",
    ),
    (
        "padding-mode",
        lambda: LocallyConnected2d(3, 4, 8, 3, padding_mode="wrap"),
        r"padding_mode must be one of .*got padding_mode='wrap'",
    ),
    (
        "too-small",
        lambda: LocallyConnected2d(3, 4, 2, 3),
        r"input_size=\(2, 2\) is too small for kernel_size=\(3, 3\)",
    ),
]


@pytest.mark.parametrize(("call", "match"), params(BAD))
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_repr():
    layer = LocallyConnected2d(4, 6, (8, 8), 3, padding=1, bias=False, padding_mode="circular")
    assert repr(layer) == (
        "LocallyConnected2d(4, 6, input_size=(8, 8), kernel_size=(3, 3), stride=(1, 1), "
        "padding=(1, 1), bias=False, padding_mode=circular)"
    )
    assert repr(LocallyConnectedNd(2, 3, (5, 5, 5), 2)).endswith("stride=(1, 1, 1), dim=3)")

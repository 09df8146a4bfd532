"""An empty batch (N = 0) through every route of the weight-carrying ops, against torch.

Each row builds our op and torch's on the same parameters and runs forward and backward on an
input of batch 0: the output must be torch's empty output (shape, dtype) and the parameter
gradients torch's (zeros of the parameter's shape), the input gradient an empty tensor of the
input's shape. Routes: windows that tile the input (1x1, ViT patches, grouped 1x1), the chunk
loop itself (:class:`~unfoldconv._chunked.ChunkedConv` called directly), the whole-batch form
(``torch.func``), the no-grad forward, Triton through its interpreter, transposed convolutions
(both routes), the locally connected layer and PatchEmbed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import unfoldconv
from tests.helpers import params
from unfoldconv import layers
from unfoldconv._args import make_geometry
from unfoldconv._chunked import (
    ChunkedConv,
    ChunkedLocallyConnected,
    conv_chunks,
    locally_connected_chunks,
)
from unfoldconv._engine import apply_function


def _empty(shape):
    return torch.randn(0, *shape, dtype=torch.float64)


def _run(op, x, parameters):
    """Output, input gradient and parameter gradients of ``op(x)`` with a random grad."""
    x = x.clone().requires_grad_(True)
    for parameter in parameters:
        parameter.grad = None
    output = op(x)
    output.backward(torch.randn_like(output))
    return output, x.grad, [parameter.grad for parameter in parameters]


def _check(ours, native, x, parameters):
    """``ours`` and ``native`` (ops of ``x`` sharing ``parameters``) agree on an empty batch."""
    expected, expected_grad, expected_params = _run(native, x, parameters)
    actual, actual_grad, actual_params = _run(ours, x, parameters)
    assert actual.shape[0] == 0
    assert_close(actual, expected)
    assert_close(actual_grad, expected_grad)
    for got, want in zip(actual_params, expected_params):
        assert_close(got, want)


def _conv_layer(native_class, our_class, *args, **kwargs):
    torch.manual_seed(0)
    native = native_class(*args, **kwargs, dtype=torch.float64)
    return our_class.from_native(native), native


# (id, torch class (ours has its name), constructor args and kwargs, input (C, *spatial))
LAYER_CASES = [
    ("1x1", nn.Conv2d, (4, 6, 1), {}, (4, 5, 5)),
    ("1x1-groups2", nn.Conv2d, (4, 6, 1), {"groups": 2}, (4, 5, 5)),
    ("patch2-s2", nn.Conv2d, (3, 5, 2), {"stride": 2}, (3, 6, 6)),
    ("1d-patch3-s3", nn.Conv1d, (2, 4, 3), {"stride": 3}, (2, 9)),
    ("3d-1x1", nn.Conv3d, (2, 3, 1), {}, (2, 3, 3, 3)),
    ("chunked-k3-p1", nn.Conv2d, (3, 4, 3), {"padding": 1}, (3, 6, 6)),
    ("chunked-s2-groups", nn.Conv2d, (4, 6, 3), {"stride": 2, "groups": 2}, (4, 7, 7)),
    ("chunked-3d", nn.Conv3d, (2, 3, 3), {"padding": 1}, (2, 4, 4, 4)),
    ("reflect", nn.Conv2d, (2, 3, 3), {"padding": 1, "padding_mode": "reflect"}, (2, 5, 5)),
    ("transposed-s2", nn.ConvTranspose2d, (3, 4, 3), {"stride": 2}, (3, 4, 4)),
    ("transp-outpad", nn.ConvTranspose2d, (3, 4, 3), dict(stride=2, output_padding=1), (3, 4, 4)),
    ("transposed-1d-groups", nn.ConvTranspose1d, (4, 2, 3), {"groups": 2}, (4, 6)),
    ("transposed-3d", nn.ConvTranspose3d, (2, 3, 2), {"stride": 2}, (2, 3, 3, 3)),
]  # fmt: skip


@pytest.mark.parametrize(("native_class", "args", "kwargs", "shape"), params(LAYER_CASES))
def test_layers_match_torch(native_class, args, kwargs, shape):
    our_class = getattr(layers, native_class.__name__)
    ours, native = _conv_layer(native_class, our_class, *args, **kwargs)
    _check(ours, native, _empty(shape), list(native.parameters()))


# (id, conv kwargs, weight (C_out, C_in/g, *kernel), input (C, *spatial))
FUNCTIONAL_CASES = [
    ("k3-p1", {"padding": 1}, (4, 3, 3, 3), (3, 6, 6)),
    ("k3-s2-groups2", {"stride": 2, "groups": 2}, (4, 2, 3, 3), (4, 7, 7)),
    ("1x1", {}, (4, 3, 1, 1), (3, 5, 5)),
]


def _functional(shape, weight_shape):
    torch.manual_seed(0)
    weight = torch.randn(weight_shape, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(weight_shape[0], dtype=torch.float64, requires_grad=True)
    return _empty(shape), weight, bias


@pytest.mark.parametrize(("kwargs", "weight_shape", "shape"), params(FUNCTIONAL_CASES))
def test_chunk_loop_itself(kwargs, weight_shape, shape):
    """ChunkedConv and its no-grad forward, called directly (the dispatcher may route around)."""
    x, weight, bias = _functional(shape, weight_shape)
    groups = kwargs.get("groups", 1)
    geometry = make_geometry(
        2, weight_shape[2:], 1, kwargs.get("padding", 0), kwargs.get("stride", 1)
    )

    def ours(x):
        return apply_function(ChunkedConv, x, weight, bias, geometry, groups, None)[0]

    def native(x):
        return F.conv2d(x, weight, bias, **kwargs)

    _check(ours, native, x, [weight, bias])
    with torch.no_grad():
        assert_close(conv_chunks(x, weight, bias, geometry, groups, None), native(x))


@pytest.mark.parametrize(("kwargs", "weight_shape", "shape"), params(FUNCTIONAL_CASES))
def test_whole_batch_form_under_torch_func(kwargs, weight_shape, shape):
    """``torch.func.grad`` takes the whole-batch form: the weight's gradient on no samples."""
    x, weight, bias = _functional(shape, weight_shape)

    def loss(conv, weight):
        return conv(x, weight, bias, **kwargs).sum()

    actual = torch.func.grad(loss, argnums=1)(unfoldconv.conv, weight)
    expected = torch.func.grad(loss, argnums=1)(F.conv2d, weight)
    assert_close(actual, expected)


@pytest.mark.parametrize(("kwargs", "weight_shape", "shape"), params(FUNCTIONAL_CASES))
def test_triton_interpreter(monkeypatch, kwargs, weight_shape, shape):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x, weight, bias = _functional(shape, weight_shape)

    def ours(x):
        with unfoldconv.backend("triton"):
            return unfoldconv.conv(x, weight, bias, **kwargs)

    _check(ours, lambda x: F.conv2d(x, weight, bias, **kwargs), x, [weight, bias])


@pytest.mark.parametrize("route", ["fold", "unfold"])
def test_conv_transpose_routes(route):
    torch.manual_seed(0)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def ours(x):
        return unfoldconv.conv_transpose(x, weight, bias, stride=2, padding=1, route=route)

    def native(x):
        return F.conv_transpose2d(x, weight, bias, stride=2, padding=1)

    _check(ours, native, _empty((3, 4, 4)), [weight, bias])


def test_locally_connected():
    """Against torch's unfold + per-position einsum, the layer and the chunk loop directly."""
    torch.manual_seed(0)
    layer = layers.LocallyConnected2d(3, 4, 6, 3, stride=1, dtype=torch.float64)
    out = 4

    def native(x):
        columns = F.unfold(x, 3)  # (N, C*K, L)
        kernels = layer.weight.reshape(out * out, 4, -1)  # (L, C_out, C*K)
        return torch.einsum("nkl,lok->nol", columns, kernels).view(-1, 4, out, out) + layer.bias

    parameters = [layer.weight, layer.bias]
    _check(layer, native, _empty((3, 6, 6)), parameters)
    geometry = make_geometry(2, (3, 3), 1, 0, 1)

    def chunked(x):
        return apply_function(
            ChunkedLocallyConnected, x, layer.weight, layer.bias, geometry, 1, None
        )

    _check(chunked, native, _empty((3, 6, 6)), parameters)
    with torch.no_grad():
        x = _empty((3, 6, 6))
        assert_close(
            locally_connected_chunks(x, layer.weight, layer.bias, geometry, 1, None), native(x)
        )


# (id, patch size, input (C, *spatial))
PATCH_CASES = [("vit-2d", (4, 4), (3, 8, 8)), ("tubelet-3d", (2, 4, 4), (3, 4, 8, 8))]


@pytest.mark.parametrize(("patch", "shape"), params(PATCH_CASES))
def test_patch_embed(patch, shape):
    torch.manual_seed(0)
    d = len(patch)
    ours = layers.PatchEmbed(patch, 3, 8, dim=d, dtype=torch.float64)
    native = (nn.Conv2d if d == 2 else nn.Conv3d)(3, 8, patch, stride=patch, dtype=torch.float64)
    native.weight, native.bias = ours.proj.weight, ours.proj.bias

    def tokens(x):
        return native(x).flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)

    _check(ours, tokens, _empty(shape), [ours.proj.weight, ours.proj.bias])

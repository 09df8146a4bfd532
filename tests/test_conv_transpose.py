"""conv_transpose / ConvTransposeNd against torch's transposed convolutions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import unfoldconv
from tests.helpers import check_module_db_inputs, compare_layers, module_infos, params
from unfoldconv.layers import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, ConvTransposeNd

TORCH_LAYER = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
OURS_LAYER = {1: ConvTranspose1d, 2: ConvTranspose2d, 3: ConvTranspose3d}

# (id, d, in_channels, out_channels, spatial, kwargs)
CASES = [
    ("1d-plain", 1, 3, 4, (6,), {"kernel_size": 3}),
    (
        "1d-dilation-output-padding",
        1,
        2,
        3,
        (5,),
        {"kernel_size": 3, "dilation": 3, "output_padding": 2},
    ),
    ("2d-stride", 2, 3, 5, (4, 5), {"kernel_size": 3, "stride": 2}),
    (
        "2d-pad-output-padding",
        2,
        4,
        2,
        (5, 4),
        {"kernel_size": (3, 2), "stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2)},
    ),
    ("2d-groups-dilation", 2, 4, 6, (4, 4), {"kernel_size": 3, "groups": 2, "dilation": 2}),
    ("2d-no-bias", 2, 3, 2, (4, 4), {"kernel_size": 2, "stride": 2, "bias": False}),
    (
        "3d",
        3,
        2,
        3,
        (3, 4, 3),
        {"kernel_size": (2, 3, 2), "stride": (2, 1, 2), "padding": (0, 1, 1)},
    ),
]


def _layers(d, c_in, c_out, kwargs):
    torch.manual_seed(0)
    native = TORCH_LAYER[d](c_in, c_out, **kwargs, dtype=torch.float64)
    torch.manual_seed(0)
    ours = OURS_LAYER[d](c_in, c_out, **kwargs, dtype=torch.float64)
    return native, ours


@pytest.mark.parametrize(("d", "c_in", "c_out", "spatial", "kwargs"), params(CASES))
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_layer_matches_torch(d, c_in, c_out, spatial, kwargs, batched):
    native, ours = _layers(d, c_in, c_out, kwargs)
    shape = (3, c_in, *spatial) if batched else (c_in, *spatial)
    compare_layers(native, ours, torch.randn(shape, dtype=torch.float64))


@pytest.mark.parametrize("route", ["fold", "unfold"])
@pytest.mark.parametrize(("d", "c_in", "c_out", "spatial", "kwargs"), params(CASES))
def test_both_routes_match_torch(d, c_in, c_out, spatial, kwargs, route):
    kwargs = dict(kwargs)
    kernel = kwargs.pop("kernel_size")
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * d
    with_bias = kwargs.pop("bias", True)
    groups = kwargs.get("groups", 1)
    x = torch.randn(2, c_in, *spatial, dtype=torch.float64)
    w = torch.randn(c_in, c_out // groups, *kernel, dtype=torch.float64)
    b = torch.randn(c_out, dtype=torch.float64) if with_bias else None
    torch_op = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[d]
    out = unfoldconv.conv_transpose(x, w, b, **kwargs, route=route)
    assert_close(out, torch_op(x, w, b, **kwargs))


def test_output_size():
    native, ours = _layers(2, 3, 4, {"kernel_size": 3, "stride": 2, "padding": 1})
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    for output_size in [(9, 9), (10, 10), (9, 10), (2, 4, 10, 9)]:
        compare_layers(native, ours, x, output_size=output_size)


def test_4d_equals_3d_when_one_dim_is_trivial():
    x = torch.randn(2, 3, 1, 4, 3, 4, dtype=torch.float64)
    w = torch.randn(3, 2, 1, 2, 2, 2, dtype=torch.float64)
    out = unfoldconv.conv_transpose(x, w, stride=(1, 2, 1, 2), padding=(0, 1, 0, 0))
    expected = F.conv_transpose3d(x[:, :, 0], w[:, :, 0], stride=(2, 1, 2), padding=(1, 0, 0))
    assert_close(out[:, :, 0], expected)
    layer = ConvTransposeNd(3, 2, (1, 2, 2, 2), stride=(1, 2, 1, 2), dtype=torch.float64)
    out = layer(x)
    assert out.shape == (2, 2, 1, 8, 4, 8)
    expected = F.conv_transpose3d(x[:, :, 0], layer.weight[:, :, 0], layer.bias, stride=(2, 1, 2))
    assert_close(out[:, :, 0], expected)


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def op(x, w, b):
        return unfoldconv.conv_transpose(x, w, b, stride=2, padding=(1, 0), output_padding=1)

    assert torch.autograd.gradcheck(op, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x, w, b), fast_mode=True)


@pytest.mark.parametrize(
    "info", module_infos(f"nn.ConvTranspose{d}d" for d in (1, 2, 3)), ids=lambda info: info.name
)
def test_torch_module_db_inputs(info):
    """torch's own ModuleInfo inputs for nn.ConvTranspose1d/2d/3d, on CPU float64."""
    check_module_db_inputs(info, OURS_LAYER[int(info.name[-2])])


def test_output_size_of_unbatched_input():
    """output_size may carry the (C,) dim of an unbatched input, as torch allows."""
    torch.manual_seed(0)
    native = nn.ConvTranspose2d(4, 6, 3, stride=2)
    ours = ConvTranspose2d(4, 6, 3, stride=2)
    ours.load_state_dict(native.state_dict())
    x = torch.randn(4, 8, 8)
    for output_size in [(18, 18), (6, 18, 18)]:
        assert_close(ours(x, output_size=output_size), native(x, output_size=output_size))


X = torch.randn(1, 3, 4, 4)
W = torch.randn(3, 2, 3, 3)

# (id, call, error, regex naming the argument and the value received)
BAD = [
    (
        "padding-mode",
        lambda: ConvTranspose2d(3, 4, 3, padding_mode="reflect"),
        ValueError,
        r"padding_mode must be 'zeros' for a transposed convolution .*got padding_mode='reflect'",
    ),
    (
        "padding-string",
        lambda: ConvTranspose2d(3, 4, 3, padding="same"),
        TypeError,
        r"padding must be an int or a tuple of ints for a transposed op .*got padding='same'",
    ),
    (
        "functional-padding-string",
        lambda: unfoldconv.conv_transpose(X, W, padding="same"),
        TypeError,
        r"padding must be an int or a tuple of ints for a transposed op .*got padding='same'",
    ),
    (
        "groups",
        lambda: ConvTranspose2d(3, 4, 3, groups=2),
        ValueError,
        r"in_channels must be divisible by groups=2, got in_channels=3",
    ),
    (
        "no-dim",
        lambda: ConvTransposeNd(3, 4, 3),
        ValueError,
        r"ConvTransposeNd needs dim .*got dim=None with kernel_size=3",
    ),
    (
        "channels",
        lambda: ConvTranspose2d(3, 4, 3)(torch.randn(1, 2, 4, 4)),
        ValueError,
        r"input must have 3 channels \(in_channels = weight.shape\[0\] = 3\), got input with 2",
    ),
    (
        "output-size",
        lambda: ConvTranspose2d(3, 4, 3, stride=2)(X, output_size=(20, 20)),
        ValueError,
        r"output_size=\(20, 20\) cannot be reached: spatial dim 0 can be between 9 and 10",
    ),
    (
        "output-padding",
        lambda: unfoldconv.conv_transpose(X, W, output_padding=1),
        ValueError,
        r"output_padding must be smaller than stride or dilation .*output_padding=\(1, 1\)",
    ),
    (
        "bias",
        lambda: unfoldconv.conv_transpose(X, W, torch.randn(3)),
        ValueError,
        r"bias must have shape \(2,\), got bias of shape \(3,\)",
    ),
    (
        "input-channels",
        lambda: unfoldconv.conv_transpose(torch.randn(1, 4, 4, 4), W),
        ValueError,
        r"input must have 3 channels .*got input with 4 channels",
    ),
    (
        "route",
        lambda: unfoldconv.conv_transpose(X, W, route="fast"),
        ValueError,
        r"route must be one of \('fold', 'unfold'\), got route='fast'",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), params(BAD))
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()

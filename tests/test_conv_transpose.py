"""conv_transpose / ConvTransposeNd against torch's transposed convolutions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import unfoldconv
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
IDS = [c[0] for c in CASES]


def _layers(d, c_in, c_out, kwargs):
    torch.manual_seed(0)
    native = TORCH_LAYER[d](c_in, c_out, **kwargs, dtype=torch.float64)
    torch.manual_seed(0)
    ours = OURS_LAYER[d](c_in, c_out, **kwargs, dtype=torch.float64)
    return native, ours


def _compare(native, ours, x, output_size=None):
    """Outputs and gradients of input, weight and bias agree (float64: default tolerances)."""
    x_native, x_ours = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    expected = native(x_native, output_size=output_size)
    actual = ours(x_ours, output_size=output_size)
    assert_close(actual, expected)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    actual.backward(grad)
    assert_close(x_ours.grad, x_native.grad)
    assert_close(ours.weight.grad, native.weight.grad)
    if native.bias is not None:
        assert_close(ours.bias.grad, native.bias.grad)


@pytest.mark.parametrize(
    ("d", "c_in", "c_out", "spatial", "kwargs"), [c[1:] for c in CASES], ids=IDS
)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_layer_matches_torch(d, c_in, c_out, spatial, kwargs, batched):
    native, ours = _layers(d, c_in, c_out, kwargs)
    shape = (3, c_in, *spatial) if batched else (c_in, *spatial)
    _compare(native, ours, torch.randn(shape, dtype=torch.float64))


@pytest.mark.parametrize("route", ["fold", "unfold"])
@pytest.mark.parametrize(
    ("d", "c_in", "c_out", "spatial", "kwargs"), [c[1:] for c in CASES], ids=IDS
)
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
        _compare(native, ours, x, output_size=output_size)


def test_4d_equals_3d_when_one_dim_is_trivial():
    x = torch.randn(2, 3, 1, 4, 3, 4, dtype=torch.float64)
    w = torch.randn(3, 2, 1, 2, 2, 2, dtype=torch.float64)
    out = unfoldconv.conv_transpose(x, w, stride=(1, 2, 1, 2), padding=(0, 1, 0, 0))
    expected = F.conv_transpose3d(x[:, :, 0], w[:, :, 0], stride=(2, 1, 2), padding=(1, 0, 0))
    assert_close(out[:, :, 0], expected)
    layer = ConvTransposeNd(3, 2, (1, 2, 2, 2), stride=(1, 2, 1, 2), dtype=torch.float64)
    assert layer(x).shape == (2, 2, 1, 8, 4, 8)


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def op(x, w, b):
        return unfoldconv.conv_transpose(x, w, b, stride=2, padding=(1, 0), output_padding=1)

    assert torch.autograd.gradcheck(op, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x, w, b), fast_mode=True)


def _module_infos():
    from torch.testing._internal.common_modules import module_db

    names = {f"nn.ConvTranspose{d}d" for d in (1, 2, 3)}
    return [info for info in module_db if info.name in names]


@pytest.mark.parametrize("info", _module_infos(), ids=lambda info: info.name)
def test_torch_module_db_inputs(info):
    """torch's own ModuleInfo inputs for nn.ConvTranspose1d/2d/3d, on CPU float64."""
    ours_cls = OURS_LAYER[int(info.name[-2])]
    inputs = info.module_inputs_func(
        info, device="cpu", dtype=torch.float64, requires_grad=False, training=True
    )
    assert inputs
    for module_input in inputs:
        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        native = info.module_cls(*args, **kwargs, dtype=torch.float64)
        ours = ours_cls.from_native(native)
        (x,) = module_input.forward_input.args
        _compare(native, ours, x, **module_input.forward_input.kwargs)


BAD = [
    ("padding-mode", lambda: ConvTranspose2d(3, 4, 3, padding_mode="reflect"), 'Only "zeros"'),
    ("padding-string", lambda: ConvTranspose2d(3, 4, 3, padding="same"), "padding must be"),
    ("groups", lambda: ConvTranspose2d(3, 4, 3, groups=2), "in_channels must be divisible"),
    ("no-dim", lambda: ConvTransposeNd(3, 4, 3), "dim"),
    ("channels", lambda: ConvTranspose2d(3, 4, 3)(torch.randn(1, 2, 4, 4)), "in_channels=3"),
    (
        "output-size",
        lambda: ConvTranspose2d(3, 4, 3, stride=2)(torch.randn(1, 3, 4, 4), output_size=(20, 20)),
        "output_size",
    ),
    (
        "output-padding",
        lambda: unfoldconv.conv_transpose(
            torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3), output_padding=1
        ),
        "output_padding",
    ),
    (
        "bias",
        lambda: unfoldconv.conv_transpose(
            torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3), torch.randn(3)
        ),
        "bias must have shape",
    ),
    (
        "input-channels",
        lambda: unfoldconv.conv_transpose(torch.randn(1, 4, 4, 4), torch.randn(3, 2, 3, 3)),
        "input must have 3 channels",
    ),
    (
        "route",
        lambda: unfoldconv.conv_transpose(
            torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3), route="fast"
        ),
        "route",
    ),
]


@pytest.mark.parametrize(("call", "match"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()

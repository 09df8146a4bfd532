"""conv / ConvNd against torch's convolutions: outputs and gradients, identities, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import unfoldconv
from unfoldconv import workspace
from unfoldconv.layers import Conv1d, Conv2d, Conv3d, ConvNd

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_LAYER = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
OURS_LAYER = {1: Conv1d, 2: Conv2d, 3: Conv3d}

# (id, d, in_channels, out_channels, spatial, kwargs)
CASES = [
    ("1d-plain", 1, 3, 4, (11,), {"kernel_size": 3}),
    ("1d-stride-dilation", 1, 4, 6, (17,), {"kernel_size": 3, "stride": 2, "dilation": 3}),
    ("1d-same-even", 1, 2, 3, (9,), {"kernel_size": 4, "padding": "same"}),
    ("2d-plain", 2, 3, 5, (7, 8), {"kernel_size": 3}),
    ("2d-pad-stride", 2, 3, 5, (9, 8), {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1}),
    ("2d-groups", 2, 4, 6, (8, 8), {"kernel_size": 3, "groups": 2, "padding": (1, 2)}),
    ("2d-depthwise", 2, 4, 8, (6, 7), {"kernel_size": 3, "groups": 4, "dilation": 2}),
    ("2d-same-dilated", 2, 3, 4, (7, 6), {"kernel_size": (2, 3), "padding": "same", "dilation": 2}),
    ("2d-valid", 2, 3, 4, (7, 6), {"kernel_size": 3, "padding": "valid"}),
    ("2d-1x1", 2, 6, 4, (5, 5), {"kernel_size": 1}),
    ("2d-1x1-groups", 2, 6, 4, (5, 5), {"kernel_size": 1, "groups": 2}),
    ("2d-1x1-stride", 2, 6, 4, (5, 5), {"kernel_size": 1, "stride": 2}),
    ("2d-no-bias", 2, 3, 4, (6, 6), {"kernel_size": 3, "bias": False}),
    ("3d-plain", 3, 2, 3, (5, 6, 4), {"kernel_size": 2}),
    (
        "3d-all",
        3,
        4,
        6,
        (7, 6, 8),
        {
            "kernel_size": (3, 1, 2),
            "stride": (1, 2, 2),
            "padding": (1, 0, 1),
            "dilation": (2, 1, 1),
            "groups": 2,
        },
    ),
]
PADDING_MODES = ["zeros", "reflect", "replicate", "circular"]


def _layers(d, c_in, c_out, kwargs, dtype=torch.float64):
    torch.manual_seed(0)
    native = TORCH_LAYER[d](c_in, c_out, **kwargs, dtype=dtype)
    torch.manual_seed(0)
    ours = OURS_LAYER[d](c_in, c_out, **kwargs, dtype=dtype)
    return native, ours


def _compare(native, ours, x, output_size=None):
    """Outputs and gradients of input, weight and bias agree (float64: default tolerances)."""
    x_native = x.clone().requires_grad_(True)
    x_ours = x.clone().requires_grad_(True)
    extra = {} if output_size is None else {"output_size": output_size}
    expected = native(x_native, **extra)
    actual = ours(x_ours, **extra)
    assert_close(actual, expected)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    actual.backward(grad)
    assert_close(x_ours.grad, x_native.grad)
    assert_close(ours.weight.grad, native.weight.grad)
    if native.bias is not None:
        assert_close(ours.bias.grad, native.bias.grad)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize(
    ("d", "c_in", "c_out", "spatial", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_layer_matches_torch(d, c_in, c_out, spatial, kwargs, padding_mode):
    native, ours = _layers(d, c_in, c_out, {**kwargs, "padding_mode": padding_mode})
    _compare(native, ours, torch.randn(3, c_in, *spatial, dtype=torch.float64))


@pytest.mark.parametrize(
    ("d", "c_in", "c_out", "spatial", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_unbatched_and_small_workspace(d, c_in, c_out, spatial, kwargs):
    native, ours = _layers(d, c_in, c_out, kwargs)
    _compare(native, ours, torch.randn(c_in, *spatial, dtype=torch.float64))
    ours.workspace_bytes = 1  # one sample per chunk
    _compare(native, ours, torch.randn(5, c_in, *spatial, dtype=torch.float64))


@pytest.mark.parametrize("workspace_bytes", [1, 3000, 2**30], ids=["1-sample", "some", "all"])
def test_functional_chunking_and_context_manager(workspace_bytes):
    x = torch.randn(7, 4, 9, 9, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    expected = F.conv2d(x, w, stride=2, padding=1, groups=2)
    out = unfoldconv.conv(x, w, stride=2, padding=1, groups=2, workspace_bytes=workspace_bytes)
    assert_close(out, expected)
    with workspace(workspace_bytes):
        assert_close(unfoldconv.conv(x, w, stride=2, padding=1, groups=2), expected)


def test_float32_channels_last_and_empty_batch():
    x = torch.randn(4, 8, 10, 10).to(memory_format=torch.channels_last)
    w = torch.randn(16, 8, 3, 3)
    # float32, sums of 72 products: torch's conv and a GEMM round differently
    assert_close(unfoldconv.conv(x, w, padding=1), F.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-4)
    empty = unfoldconv.conv(torch.randn(0, 8, 10, 10), w)
    assert empty.shape == (0, 16, 8, 8)


def test_conv4d_is_a_sum_of_conv3d():
    x = torch.randn(2, 3, 5, 6, 5, 4, dtype=torch.float64)
    w = torch.randn(4, 3, 2, 3, 2, 2, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    out = unfoldconv.conv(x, w, b, stride=(1, 2, 1, 1), padding=(1, 0, 1, 0))
    # the first spatial dim by hand: out[t] = sum_i conv3d(x[t*1 + i - 1], w[:, :, i])
    padded = F.pad(x, (0, 0, 0, 0, 0, 0, 1, 1))
    frames = []
    for t in range(padded.shape[2] - w.shape[2] + 1):
        frame = sum(
            F.conv3d(padded[:, :, t + i], w[:, :, i], stride=(2, 1, 1), padding=(0, 1, 0))
            for i in range(w.shape[2])
        )
        frames.append(frame + b.view(1, -1, 1, 1, 1))
    assert_close(out, torch.stack(frames, dim=2))
    layer = ConvNd(
        3, 4, (2, 3, 2, 2), stride=(1, 2, 1, 1), padding=(1, 0, 1, 0), dtype=torch.float64
    )
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    assert_close(layer(x), out)


GRAD_CASES = [
    ("2d-stride-pad", (2, 2, 5, 4), (3, 2, 3, 2), {"stride": 2, "padding": 1}),
    ("2d-groups-dilation", (2, 4, 5, 5), (4, 2, 2, 2), {"groups": 2, "dilation": 2}),
    ("1d-same", (2, 2, 7), (3, 2, 4), {"padding": "same"}),
    ("3d", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), {"padding": (1, 0, 1)}),
    ("2d-1x1", (2, 3, 4, 4), (5, 3, 1, 1), {}),
]


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"), [c[1:] for c in GRAD_CASES], ids=[c[0] for c in GRAD_CASES]
)
def test_gradcheck_and_gradgradcheck(x_shape, w_shape, kwargs):
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True)

    def op(x, w, b):
        return unfoldconv.conv(x, w, b, **kwargs, workspace_bytes=1)

    assert torch.autograd.gradcheck(op, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x, w, b), fast_mode=True)


def _module_infos(prefix):
    from torch.testing._internal.common_modules import module_db

    return [info for info in module_db if info.name in {f"nn.{prefix}{d}d" for d in (1, 2, 3)}]


@pytest.mark.parametrize("info", _module_infos("Conv"), ids=lambda info: info.name)
def test_torch_module_db_inputs(info):
    """torch's own ModuleInfo inputs for nn.Conv1d/2d/3d, on CPU float64."""
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
        _compare(native, ours, x)


BAD = [
    (
        "groups",
        lambda: unfoldconv.conv(torch.randn(1, 4, 5, 5), torch.randn(3, 2, 3, 3), groups=2),
        "divisible by groups",
    ),
    (
        "channels",
        lambda: unfoldconv.conv(torch.randn(1, 5, 5, 5), torch.randn(3, 4, 3, 3)),
        "input must have 4 channels",
    ),
    (
        "bias-shape",
        lambda: unfoldconv.conv(torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(4)),
        "bias must have shape",
    ),
    (
        "padding-string",
        lambda: unfoldconv.conv(torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), padding="full"),
        "padding must be",
    ),
    (
        "same-strided",
        lambda: unfoldconv.conv(
            torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), stride=2, padding="same"
        ),
        "stride",
    ),
    (
        "tuple-length",
        lambda: unfoldconv.conv(torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), stride=(1, 1, 1)),
        "weight must be",
    ),
    (
        "input-dims",
        lambda: unfoldconv.conv(torch.randn(4, 5), torch.randn(3, 4, 3, 3)),
        "input must be",
    ),
    (
        "kernel-too-big",
        lambda: unfoldconv.conv(torch.randn(1, 4, 2, 2), torch.randn(3, 4, 3, 3)),
        "kernel_size",
    ),
    (
        "groups-zero",
        lambda: unfoldconv.conv(torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), groups=0),
        "groups",
    ),
    (
        "workspace",
        lambda: unfoldconv.conv(
            torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), workspace_bytes=0
        ),
        "workspace_bytes",
    ),
    ("layer-padding-mode", lambda: Conv2d(3, 4, 3, padding_mode="mirror"), "padding_mode"),
    ("layer-groups", lambda: Conv2d(3, 4, 3, groups=2), "in_channels must be divisible"),
    ("layer-same-strided", lambda: Conv2d(3, 4, 3, stride=2, padding="same"), "stride"),
    ("layer-padding-string", lambda: Conv2d(3, 4, 3, padding="half"), "padding must be"),
    ("convnd-no-dim", lambda: ConvNd(3, 4, 3), "dim"),
    ("convnd-dim-mismatch", lambda: ConvNd(3, 4, (3, 3), dim=3), "dim=3"),
    ("layer-channels", lambda: Conv2d(3, 4, 3)(torch.randn(1, 2, 5, 5)), "in_channels=3"),
    (
        "layer-reflect-too-much",
        lambda: Conv1d(1, 1, 3, padding=4, padding_mode="reflect")(torch.randn(1, 1, 3)),
        "reflect",
    ),
]


@pytest.mark.parametrize(("call", "match"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_dtype_mismatch_is_type_error():
    with pytest.raises(TypeError, match="weight must have the input's dtype"):
        unfoldconv.conv(torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3, dtype=torch.float64))

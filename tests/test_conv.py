"""conv / ConvNd against torch's convolutions: outputs and gradients, identities, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import unfoldconv
from tests.helpers import check_module_db_inputs, compare_layers, module_infos, params
from unfoldconv import workspace
from unfoldconv._chunked import chunk_size
from unfoldconv.layers import Conv1d, Conv2d, Conv3d, ConvNd
from unfoldconv.memory import default_workspace_bytes

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


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize(("d", "c_in", "c_out", "spatial", "kwargs"), params(CASES))
def test_layer_matches_torch(d, c_in, c_out, spatial, kwargs, padding_mode):
    native, ours = _layers(d, c_in, c_out, {**kwargs, "padding_mode": padding_mode})
    compare_layers(native, ours, torch.randn(3, c_in, *spatial, dtype=torch.float64))


@pytest.mark.parametrize(("d", "c_in", "c_out", "spatial", "kwargs"), params(CASES))
def test_unbatched_and_small_workspace(d, c_in, c_out, spatial, kwargs):
    native, ours = _layers(d, c_in, c_out, kwargs)
    compare_layers(native, ours, torch.randn(c_in, *spatial, dtype=torch.float64))
    ours.workspace_bytes = 1  # one sample per chunk
    compare_layers(native, ours, torch.randn(5, c_in, *spatial, dtype=torch.float64))


@pytest.mark.parametrize("workspace_bytes", [1, 3000, 2**30], ids=["1-sample", "some", "all"])
def test_functional_chunking_and_context_manager(workspace_bytes):
    x = torch.randn(7, 4, 9, 9, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    expected = F.conv2d(x, w, stride=2, padding=1, groups=2)
    out = unfoldconv.conv(x, w, stride=2, padding=1, groups=2, workspace_bytes=workspace_bytes)
    assert_close(out, expected)
    with workspace(workspace_bytes):
        assert_close(unfoldconv.conv(x, w, stride=2, padding=1, groups=2), expected)


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cpu", 16), ("cuda", 100), ("cuda:1", 100)],  # 1 MiB per sample: 16 MiB vs 1 GiB default
)
def test_default_workspace_depends_on_the_device(device, expected):
    """The CPU chunks at 16 MiB, a GPU takes the whole batch up to 1 GiB; workspace() rules all."""
    assert chunk_size(100, 2**20, None, torch.device(device)) == expected
    assert chunk_size(100, 2**20, 5 * 2**20, torch.device(device)) == 5  # the caller's budget
    with workspace(3 * 2**20):
        assert chunk_size(100, 2**20, None, torch.device(device)) == 3
    assert default_workspace_bytes(torch.device(device)) == {16: 2**24, 100: 2**30}[expected]


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


@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), params(GRAD_CASES))
def test_gradcheck_and_gradgradcheck(x_shape, w_shape, kwargs):
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True)

    def op(x, w, b):
        return unfoldconv.conv(x, w, b, **kwargs, workspace_bytes=1)

    assert torch.autograd.gradcheck(op, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x, w, b), fast_mode=True)


@pytest.mark.parametrize(
    "info", module_infos(f"nn.Conv{d}d" for d in (1, 2, 3)), ids=lambda info: info.name
)
def test_torch_module_db_inputs(info):
    """torch's own ModuleInfo inputs for nn.Conv1d/2d/3d, on CPU float64."""
    check_module_db_inputs(info, OURS_LAYER[int(info.name[-2])])


X = torch.randn(1, 4, 5, 5)
W = torch.randn(3, 4, 3, 3)

# (id, call, error, regex naming the argument and the value received)
BAD = [
    (
        "groups",
        lambda: unfoldconv.conv(X, torch.randn(3, 2, 3, 3), groups=2),
        ValueError,
        r"weight.shape\[0\] \(C_out\) must be divisible by groups=2, got .*=3",
    ),
    (
        "channels",
        lambda: unfoldconv.conv(torch.randn(1, 5, 5, 5), W),
        ValueError,
        r"input must have 4 channels .*got input with 5 channels",
    ),
    (
        "bias-shape",
        lambda: unfoldconv.conv(X, W, torch.randn(4)),
        ValueError,
        r"bias must have shape \(3,\), got bias of shape \(4,\)",
    ),
    (
        "padding-string",
        lambda: unfoldconv.conv(X, W, padding="full"),
        ValueError,
        r"padding must be .*'valid' or 'same', got padding='full'",
    ),
    (
        "same-strided",
        lambda: unfoldconv.conv(X, W, stride=2, padding="same"),
        ValueError,
        r"padding='same' needs stride 1.*got stride=\(2, 2\)",
    ),
    (
        "tuple-length",
        lambda: unfoldconv.conv(X, W, stride=(1, 1, 1)),
        ValueError,
        r"weight must be \(C_out, C_in / groups, \*kernel_size\) with 3 spatial dim.*"
        r"\(3, 4, 3, 3\)",
    ),
    (
        "input-dims",
        lambda: unfoldconv.conv(torch.randn(4, 5), W),
        ValueError,
        r"input must be \(N, C, \*spatial\) or \(C, \*spatial\) with 2 .*\(4, 5\)",
    ),
    (
        "kernel-too-big",
        lambda: unfoldconv.conv(torch.randn(1, 4, 2, 2), W),
        ValueError,
        r"kernel_size=\(3, 3\) .*spans 3 .*padded input size 2",
    ),
    (
        "groups-zero",
        lambda: unfoldconv.conv(X, W, groups=0),
        ValueError,
        r"groups must be positive, got groups=0",
    ),
    (
        "groups-float",
        lambda: unfoldconv.conv(X, W, groups=1.0),
        TypeError,
        r"groups must be an int, got groups=1.0",
    ),
    (
        "workspace",
        lambda: unfoldconv.conv(X, W, workspace_bytes=0),
        ValueError,
        r"workspace_bytes must be positive, got workspace_bytes=0",
    ),
    (
        "dtype",
        lambda: unfoldconv.conv(X, W.double()),
        TypeError,
        r"weight must have the input's dtype torch.float32, got weight of dtype torch.float64",
    ),
    (
        "layer-padding-mode",
        lambda: Conv2d(3, 4, 3, padding_mode="mirror"),
        ValueError,
        r"padding_mode must be one of .*got padding_mode='mirror'",
    ),
    (
        "layer-groups",
        lambda: Conv2d(3, 4, 3, groups=2),
        ValueError,
        r"in_channels must be divisible by groups=2, got in_channels=3",
    ),
    (
        "layer-same-strided",
        lambda: Conv2d(3, 4, 3, stride=2, padding="same"),
        ValueError,
        r"padding='same' needs stride 1.*stride=\(2, 2\)",
    ),
    (
        "layer-padding-string",
        lambda: Conv2d(3, 4, 3, padding="half"),
        ValueError,
        r"padding must be .*got padding='half'",
    ),
    (
        "layer-in-channels-float",
        lambda: Conv2d(3.0, 4, 3),
        TypeError,
        r"in_channels must be an int, got in_channels=3.0 \(float\)",
    ),
    (
        "layer-out-channels-zero",
        lambda: Conv2d(3, 0, 3),
        ValueError,
        r"out_channels must be positive, got out_channels=0",
    ),
    (
        "convnd-no-dim",
        lambda: ConvNd(3, 4, 3),
        ValueError,
        r"ConvNd needs dim .*got dim=None with kernel_size=3",
    ),
    (
        "convnd-dim-float",
        lambda: ConvNd(3, 4, 3, dim=2.0),
        TypeError,
        r"dim must be an int or None, got dim=2.0 \(float\)",
    ),
    (
        "convnd-dim-mismatch",
        lambda: ConvNd(3, 4, (3, 3), dim=3),
        ValueError,
        r"size arguments of length 2 do not match dim=3 \(kernel_size=\(3, 3\)",
    ),
    (
        "layer-channels",
        lambda: Conv2d(3, 4, 3)(torch.randn(1, 2, 5, 5)),
        ValueError,
        r"input must have 3 channels \(in_channels = .*\), got input with 2 channels",
    ),
    (
        "layer-reflect-too-much",
        lambda: Conv1d(1, 1, 3, padding=4, padding_mode="reflect")(torch.randn(1, 1, 3)),
        ValueError,
        r"padding_mode='reflect' needs padding smaller than the input size, got padding \(4, 4\)",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), params(BAD))
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()

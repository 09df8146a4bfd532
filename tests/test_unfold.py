"""unfold / Unfold against F.unfold (bit for bit), a loop reference (d=1..5) and unfoldNd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import unfoldNd

from tests.helpers import params
from tests.reference import unfold_loop
from unfoldconv import Unfold, unfold

# (id, input shape, kwargs) for d = 2, compared bit for bit with F.unfold
TORCH_CASES = [
    ("k3", (2, 3, 7, 9), {"kernel_size": 3}),
    ("k3-p1", (2, 3, 7, 9), {"kernel_size": 3, "padding": 1}),
    ("k2x3-s2x1", (2, 3, 7, 9), {"kernel_size": (2, 3), "stride": (2, 1)}),
    ("k3-d2-p2-s3", (1, 4, 11, 10), {"kernel_size": 3, "dilation": 2, "padding": 2, "stride": 3}),
    ("k1", (3, 5, 4, 4), {"kernel_size": 1}),
    ("k-full", (2, 2, 4, 5), {"kernel_size": (4, 5)}),
    (
        "asymmetric-all",
        (2, 3, 9, 8),
        {"kernel_size": (3, 2), "dilation": (1, 2), "padding": (2, 0), "stride": (2, 3)},
    ),
]


@pytest.mark.parametrize("shape, kwargs", params(TORCH_CASES))
def test_matches_torch_bit_for_bit(device, shape, kwargs):
    x = torch.randn(shape, device=device)
    assert torch.equal(unfold(x, **kwargs), F.unfold(x, **kwargs))


def _torch_unfold_samples():
    from torch.testing._internal.common_methods_invocations import op_db

    info = next(op for op in op_db if op.name == "nn.functional.unfold")
    return list(info.sample_inputs("cpu", torch.float64))


def _as_pairs(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def test_torch_opinfo_samples():
    """Every sample input torch's own OpInfo uses for nn.functional.unfold (4-D and unbatched 3-D).

    Sizes are passed as 2-tuples: with all-int sizes unfoldconv reads a 3-D input as a batched
    1-d signal (documented), F.unfold as one unbatched image.
    """
    samples = _torch_unfold_samples()
    assert len(samples) > 50
    for sample in samples:
        args = [sample.args[0], *sample.args[1:]]
        names = ["kernel_size", "dilation", "padding", "stride"][: len(args)]
        kwargs = {**dict(zip(names, args)), **sample.kwargs}
        pairs = {name: _as_pairs(value) for name, value in kwargs.items()}
        expected = F.unfold(sample.input, **kwargs)
        assert torch.equal(unfold(sample.input, **pairs), expected), (
            tuple(sample.input.shape),
            kwargs,
        )


# (id, input shape, kwargs) for the loop reference, d = 1..5
ND_CASES = [
    ("1d-k3-p1", (2, 3, 9), {"kernel_size": 3, "padding": 1}),
    ("1d-k2-d3-s2", (2, 2, 12), {"kernel_size": 2, "dilation": 3, "stride": 2}),
    (
        "2d-mixed",
        (2, 2, 7, 6),
        {"kernel_size": (2, 3), "padding": (1, 0), "stride": (2, 1), "dilation": (2, 1)},
    ),
    ("3d-k2-p1-s2", (2, 2, 5, 4, 6), {"kernel_size": 2, "padding": 1, "stride": 2}),
    (
        "3d-mixed",
        (1, 3, 6, 5, 4),
        {"kernel_size": (3, 1, 2), "dilation": (1, 2, 1), "stride": (1, 2, 2)},
    ),
    ("4d-k2", (1, 2, 4, 3, 4, 3), {"kernel_size": 2, "padding": (0, 1, 0, 1)}),
    ("5d-k2-s2", (1, 2, 3, 4, 3, 4, 3), {"kernel_size": 2, "stride": 2, "padding": 1}),
]


@pytest.mark.parametrize("shape, kwargs", params(ND_CASES))
def test_matches_loop_reference(device, shape, kwargs):
    x = torch.randn(shape, device=device, dtype=torch.float64)
    assert torch.equal(unfold(x, **kwargs), unfold_loop(x, **kwargs))


@pytest.mark.parametrize(
    "shape, kwargs",
    params([c for c in ND_CASES if len(c[1]) <= 5]),
)
def test_matches_unfoldNd(device, shape, kwargs):
    x = torch.randn(shape, device=device)
    # unfoldNd computes a one-hot convolution: equal up to float rounding of x * 1.0 + 0 * ...
    torch.testing.assert_close(unfold(x, **kwargs), unfoldNd.unfoldNd(x, **kwargs))


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4], ids=lambda k: f"k{k}")
@pytest.mark.parametrize("dilation", [1, 2], ids=lambda v: f"dil{v}")
def test_same_padding_matches_conv(kernel_size, dilation):
    """padding='same' is F.conv2d's: unfold + matmul equals the 'same' convolution."""
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    weight = torch.randn(4, 3, kernel_size, kernel_size, dtype=torch.float64)
    columns = unfold(x, kernel_size, dilation=dilation, padding="same")
    result = (weight.flatten(1) @ columns).view(2, 4, 7, 8)
    expected = F.conv2d(x, weight, padding="same", dilation=dilation)
    torch.testing.assert_close(result, expected)


def test_valid_padding_is_zero_padding():
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(unfold(x, 3, padding="valid"), unfold(x, 3, padding=0))


LAYOUTS = [
    ("channels_last", lambda x: x.contiguous(memory_format=torch.channels_last)),
    ("transposed", lambda x: x.transpose(2, 3).contiguous().transpose(2, 3)),
    ("sliced", lambda x: torch.cat([x, x], dim=3)[..., ::2]),
    ("channel-slice", lambda x: torch.cat([x, x], dim=1)[:, 1 : 1 + x.shape[1]]),
    ("expanded", lambda x: x[:1].expand_as(x)),
]


@pytest.mark.parametrize("make", params(LAYOUTS))
def test_memory_layouts(device, make):
    x = make(torch.randn(2, 3, 8, 7, device=device))
    assert torch.equal(
        unfold(x, 3, padding=1, stride=2), F.unfold(x.contiguous(), 3, padding=1, stride=2)
    )


def test_channels_last_3d(device):
    x = torch.randn(2, 3, 5, 6, 7, device=device).contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(unfold(x, 2, padding=1), unfold_loop(x.contiguous(), 2, padding=1))


def test_empty_batch(device):
    x = torch.randn(0, 3, 6, 6, device=device, requires_grad=True)
    out = unfold(x, 3, padding=1)
    assert out.shape == (0, 27, 36)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(
    "shape, kernel_size",
    [((3, 10), (4,)), ((3, 6, 7), (2, 3)), ((2, 4, 5, 6), (2, 2, 3))],
    ids=["1d", "2d", "3d"],
)
def test_unbatched(device, shape, kernel_size):
    x = torch.randn(shape, device=device)
    expected = unfold(x.unsqueeze(0), kernel_size, padding=1).squeeze(0)
    assert torch.equal(unfold(x, kernel_size, padding=1), expected)


def test_unbatched_2d_matches_torch():
    x = torch.randn(3, 6, 7)
    assert torch.equal(unfold(x, (2, 3), padding=1), F.unfold(x, (2, 3), padding=1))


def test_all_int_sizes_read_3d_input_as_batched_1d():
    x = torch.randn(2, 3, 10)
    columns = unfold(x, 3)
    assert columns.shape == (2, 9, 8)
    assert torch.equal(columns, unfold_loop(x, 3))
    # the same windows as F.unfold of the signal as a 1-row image with a (1, 3) kernel
    assert torch.equal(columns, F.unfold(x.unsqueeze(2), (1, 3)))


DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
    torch.int8,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.bool,
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(device, dtype):
    source = torch.randn(2, 3, 6, 5, dtype=torch.float64, device=device) * 10
    x = source > 0 if dtype == torch.bool else source.to(dtype)
    if dtype.is_complex:
        x = x + 1j * source.to(dtype)
    out = unfold(x, (2, 3), padding=1, stride=(1, 2))
    assert out.dtype == dtype and out.device == x.device
    assert torch.equal(out, unfold_loop(x, (2, 3), padding=1, stride=(1, 2)))


def test_output_is_a_fresh_tensor():
    """A 1x1 unfold could be a view; it must not alias its input (F.unfold does not)."""
    x = torch.randn(2, 3, 4, 4)
    out = unfold(x, 1)
    out.zero_()
    assert x.abs().sum() > 0


def test_same_call_twice_is_bit_identical(device):
    x = torch.randn(4, 5, 9, 9, device=device)
    assert torch.equal(unfold(x, 3, padding=1, stride=2), unfold(x, 3, padding=1, stride=2))


def test_module_matches_function():
    x = torch.randn(2, 3, 6, 6, 6)
    module = Unfold(kernel_size=(2, 2, 2), stride=2, padding=1)
    assert torch.equal(module(x), unfold(x, (2, 2, 2), stride=2, padding=1))
    assert repr(module) == "Unfold(kernel_size=(2, 2, 2), dilation=1, padding=1, stride=2)"

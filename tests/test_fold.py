"""fold / Fold against F.fold, a loop reference (d=1..5) and unfoldNd; identities; big sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import unfoldNd

from tests.helpers import as_tuple, params
from tests.reference import fold_loop, unfold_loop
from unfoldconv import Fold, fold, unfold

# (id, output_size, kwargs); the input gets the matching (N, C*K, L)
CASES = [
    ("1d-k3-p1", (9,), {"kernel_size": 3, "padding": 1}),
    ("1d-k2-d3-s2", (12,), {"kernel_size": 2, "dilation": 3, "stride": 2}),
    ("2d-k3", (7, 9), {"kernel_size": 3}),
    ("2d-k3-p1-s2", (7, 9), {"kernel_size": 3, "padding": 1, "stride": 2}),
    (
        "2d-mixed",
        (7, 6),
        {"kernel_size": (2, 3), "padding": (1, 0), "stride": (2, 1), "dilation": (2, 1)},
    ),
    ("2d-stride-gt-kernel", (9, 9), {"kernel_size": 2, "stride": 3}),
    ("3d-k2-p1-s2", (5, 4, 6), {"kernel_size": 2, "padding": 1, "stride": 2}),
    ("3d-mixed", (6, 5, 4), {"kernel_size": (3, 1, 2), "dilation": (1, 2, 1), "stride": (1, 2, 2)}),
    ("4d-k2", (4, 3, 4, 3), {"kernel_size": 2, "padding": (0, 1, 0, 1)}),
    ("5d-k2-s2", (3, 4, 3, 4, 3), {"kernel_size": 2, "stride": 2, "padding": 1}),
]


def _columns(output_size, kwargs, batch=2, channels=3, dtype=torch.float64, device="cpu"):
    d = len(output_size)
    kwargs = {**kwargs, "kernel_size": as_tuple(kwargs["kernel_size"], d)}
    probe = unfold(torch.zeros(1, 1, *output_size), **kwargs)
    return torch.randn(batch, channels * probe.shape[1], probe.shape[2], dtype=dtype, device=device)


def _with_tuples(output_size, kwargs):
    d = len(output_size)
    return {**kwargs, "kernel_size": as_tuple(kwargs["kernel_size"], d)}


@pytest.mark.parametrize("output_size, kwargs", params(CASES))
def test_matches_loop_reference(device, output_size, kwargs):
    kwargs = _with_tuples(output_size, kwargs)
    columns = _columns(output_size, kwargs, device=device)
    torch.testing.assert_close(
        fold(columns, output_size, **kwargs), fold_loop(columns, output_size, **kwargs)
    )


TWO_D = [c for c in CASES if len(c[1]) == 2]


@pytest.mark.parametrize("output_size, kwargs", params(TWO_D))
def test_matches_torch(device, output_size, kwargs):
    columns = _columns(output_size, kwargs, dtype=torch.float32, device=device)
    torch.testing.assert_close(
        fold(columns, output_size, **kwargs), F.fold(columns, output_size, **kwargs)
    )


UP_TO_3D = [c for c in CASES if len(c[1]) <= 3]


@pytest.mark.parametrize("output_size, kwargs", params(UP_TO_3D))
def test_matches_unfoldNd(device, output_size, kwargs):
    columns = _columns(output_size, kwargs, dtype=torch.float32, device=device)
    expected = unfoldNd.foldNd(columns, tuple(output_size), **kwargs)
    torch.testing.assert_close(
        fold(columns, output_size, **_with_tuples(output_size, kwargs)), expected
    )


@pytest.mark.parametrize("output_size, kwargs", params(CASES))
def test_adjoint_identity(output_size, kwargs):
    """<unfold(x), y> == <x, fold(y)> in float64."""
    kwargs = _with_tuples(output_size, kwargs)
    x = torch.randn(2, 3, *output_size, dtype=torch.float64)
    y = torch.randn_like(unfold(x, **kwargs))
    torch.testing.assert_close(
        (unfold(x, **kwargs) * y).sum(), (x * fold(y, output_size, **kwargs)).sum()
    )


def test_fold_of_unfold_counts_overlaps():
    """fold(unfold(x)) == divisor * x, divisor = fold(unfold(ones)) (unfoldNd's identity)."""
    x = torch.randn(2, 3, 6, 7, 5, dtype=torch.float64)
    kwargs = {"kernel_size": (3, 2, 2), "padding": 1, "stride": (1, 2, 1)}
    divisor = fold(unfold(torch.ones_like(x), **kwargs), x.shape[2:], **kwargs)
    round_trip = fold(unfold(x, **kwargs), x.shape[2:], **kwargs)
    torch.testing.assert_close(round_trip, divisor * x)
    # and each of the two against the loops
    expected = fold_loop(unfold_loop(x, **kwargs), x.shape[2:], **kwargs)
    torch.testing.assert_close(round_trip, expected)
    expected_divisor = fold_loop(unfold_loop(torch.ones_like(x), **kwargs), x.shape[2:], **kwargs)
    assert torch.equal(divisor, expected_divisor)  # integer counts: exact


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.complex64,
        torch.int32,
        torch.int64,
        torch.uint8,
    ],
    ids=str,
)
def test_dtypes(device, dtype):
    columns = (_columns((6, 5), {"kernel_size": 2, "padding": 1}, device=device) * 5).to(dtype)
    out = fold(columns, (6, 5), 2, padding=1)
    assert out.dtype == dtype and out.device == columns.device
    if dtype.is_complex:
        wide = torch.complex128
    elif dtype.is_floating_point:
        wide = torch.float64
    else:
        wide = torch.int64  # exact, and wraps like the narrow type when cast back
    expected = fold_loop(columns.to(wide), (6, 5), 2, padding=1)
    if dtype.is_floating_point and torch.finfo(dtype).bits == 16:
        # each output sums up to 4 overlapping values rounded to 16 bits after every addition,
        # the reference rounds once: up to 4 roundings of the largest partial sum apart
        bound = 4 * torch.finfo(dtype).eps * expected.abs().max().item()
        torch.testing.assert_close(out, expected.to(dtype), atol=bound, rtol=0)
    else:  # integers: exact; float32 / complex64: the dtype's default tolerance
        torch.testing.assert_close(out, expected.to(dtype))


def test_same_call_twice_is_bit_identical(device):
    columns = torch.randn(8, 16 * 9, 16 * 16, device=device)
    first = fold(columns, (31, 31), 3, stride=2, padding=1)
    second = fold(columns, (31, 31), 3, stride=2, padding=1)
    assert torch.equal(first, second)


def test_output_past_2_pow_24_elements():
    """unfoldNd refuses this size; the engine has no limit of its own. Integer values: exact."""
    size = 4098  # 4098**2 = 16_793_604 > 2**24
    assert size * size > 2**24
    x = torch.randint(-8, 8, (1, 1, size, size), dtype=torch.int32)
    columns = unfold(x, 2, stride=2)
    assert torch.equal(fold(columns, (size, size), 2, stride=2), x)
    overlapping = fold(unfold(x.float(), 2, stride=1), (size, size), 2, stride=1)
    assert torch.equal(overlapping, F.fold(F.unfold(x.float(), 2), (size, size), 2))


def test_empty_batch_and_unbatched(device):
    assert fold(torch.randn(0, 12, 9, device=device), (4, 4), 2).shape == (0, 3, 4, 4)
    columns = torch.randn(12, 9, device=device)
    assert torch.equal(fold(columns, (4, 4), 2), fold(columns.unsqueeze(0), (4, 4), 2).squeeze(0))
    torch.testing.assert_close(fold(columns, (4, 4), 2), F.fold(columns, (4, 4), 2))


def test_non_contiguous_input():
    columns = torch.randn(2, 9, 12).transpose(1, 2)  # (N, C*K, L) = (2, 12, 9), strided
    assert not columns.is_contiguous()
    torch.testing.assert_close(
        fold(columns, (4, 5), 2, padding=1, stride=2),
        F.fold(columns, (4, 5), 2, padding=1, stride=2),
    )


def test_module_matches_function():
    columns = torch.randn(2, 3 * 8, math.prod((3, 3, 3)))
    module = Fold(output_size=(6, 6, 6), kernel_size=2, stride=2)
    assert torch.equal(module(columns), fold(columns, (6, 6, 6), 2, stride=2))
    assert "output_size=(6, 6, 6)" in repr(module)


def test_bool_is_a_logical_or_of_overlaps_like_torch(device):
    columns = torch.rand(2, 3 * 4, 25, device=device) > 0.7  # (6, 6) output, kernel 2, overlapping
    out = fold(columns, (6, 6), 2)
    assert out.dtype == torch.bool
    assert torch.equal(out, F.fold(columns, (6, 6), 2))
    assert torch.equal(out, fold(columns.float(), (6, 6), 2) > 0)

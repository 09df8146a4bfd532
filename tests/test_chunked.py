"""The one chunk loop (``unfoldconv._chunked``): plans over samples and over slabs of positions.

Each chunk's columns are checked against the whole-batch gather, the folds of the chunks
against the whole-batch fold, and the chunked layers with a workspace smaller than one sample
(slabs of positions) against torch's convs, values and gradients.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from tests.reference import unfold_loop
from unfoldconv import _chunked
from unfoldconv._args import make_geometry
from unfoldconv._chunked import gather_chunk, has_slabs, plan_chunks, scatter_chunk
from unfoldconv._engine import scatter
from unfoldconv._geometry import Geometry


def columns_reference(x: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The loop reference of tests/reference.py on the explicitly padded input, offsets flipped
    when the geometry says so."""
    pads = [side for lo_hi in reversed(geometry.padding) for side in lo_hi]  # F.pad's order
    columns = unfold_loop(
        F.pad(x, pads), geometry.kernel_size, geometry.dilation, 0, geometry.stride
    )
    if not geometry.flip:
        return columns
    n, rows, length = columns.shape
    blocks = columns.view(n, -1, *geometry.kernel_size, length)  # (N, C, *kernel, L)
    kernel_dims = tuple(range(2, 2 + geometry.dim))
    return blocks.flip(kernel_dims).reshape(n, rows, length)


def random_geometry(rng: random.Random) -> tuple[Geometry, tuple[int, ...]]:
    d = rng.randint(1, 3)
    kernel = tuple(rng.randint(1, 3) for _ in range(d))
    stride = tuple(rng.randint(1, 3) for _ in range(d))
    dilation = tuple(rng.randint(1, 2) for _ in range(d))
    padding = tuple((rng.randint(0, 3), rng.randint(0, 3)) for _ in range(d))
    geometry = Geometry(kernel, dilation, padding, stride, flip=rng.random() < 0.3)
    size = tuple(
        rng.randint(max(1, dil * (k - 1) + 1 - lo - hi), 8)
        for k, dil, (lo, hi) in zip(kernel, dilation, padding)
    )
    return geometry, size


@pytest.mark.parametrize("seed", range(40))
def test_chunks_tile_the_columns(seed):
    rng = random.Random(seed)
    geometry, size = random_geometry(rng)
    n, c = rng.randint(1, 3), rng.randint(1, 2)
    x = torch.randn(n, c, *size, dtype=torch.float64)
    reference = columns_reference(x, geometry)  # (N, C*K, L)
    # a budget between one row and a few samples: both kinds of plan occur
    budget = rng.randint(1, reference[0].numel() * 8 * 3)
    plan = plan_chunks(n, c, size, geometry, x.element_size(), budget)
    covered = torch.zeros(reference.shape[0], reference.shape[2], dtype=torch.int64)
    grad = torch.zeros_like(x) if has_slabs(plan) else torch.empty_like(x)
    grad_samples_last = torch.zeros_like(x)
    for chunk in plan:
        columns = gather_chunk(x, geometry, chunk)
        expected = reference[chunk.samples, :, chunk.positions]
        torch.testing.assert_close(columns, expected, rtol=0, atol=0)
        # the samples-last layout: the same columns, (n, C*K, l) -> (C*K, l, n)
        moved = gather_chunk(x, geometry, chunk, samples_last=True)
        torch.testing.assert_close(moved, expected.permute(1, 2, 0), rtol=0, atol=0)
        covered[chunk.samples, chunk.positions] += 1
        scatter_chunk(columns, geometry, chunk, grad)
        scatter_chunk(moved, geometry, chunk, grad_samples_last, samples_last=True)
    assert (covered == 1).all(), "every (sample, position) in exactly one chunk"
    torch.testing.assert_close(grad, scatter(reference, size, geometry))
    torch.testing.assert_close(grad_samples_last, grad)


def test_plan_slabs_only_when_a_sample_does_not_fit():
    geometry = Geometry((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    sample_bytes = 2 * 9 * 64 * 4  # C=2, K=9, 8x8 positions, float32
    whole = plan_chunks(5, 2, (8, 8), geometry, 4, budget=2 * sample_bytes)
    assert [(c.samples.start, c.samples.stop) for c in whole] == [(0, 2), (2, 4), (4, 5)]
    assert not has_slabs(whole)
    slabs = plan_chunks(2, 2, (8, 8), geometry, 4, budget=sample_bytes // 3)  # 2 rows fit
    assert has_slabs(slabs)
    assert [(c.samples.start, c.rows.start, c.rows.stop) for c in slabs] == [
        (s, r, r + 2) for s in range(2) for r in range(0, 8, 2)
    ]
    assert plan_chunks(0, 2, (8, 8), geometry, 4) == []


SLAB_CASES = {
    "2d k3 p1": dict(size=(9, 7), kernel=(3, 3), stride=1, padding=1, dilation=1, groups=1),
    "2d k3 s2 grouped": dict(
        size=(11, 8), kernel=(3, 3), stride=2, padding=1, dilation=1, groups=2
    ),
    "2d dilated": dict(size=(10, 9), kernel=(3, 2), stride=1, padding=(2, 0), dilation=2, groups=1),
    "3d k3 p1": dict(size=(5, 6, 4), kernel=(3, 3, 3), stride=1, padding=1, dilation=1, groups=1),
    "1d k5 s3": dict(size=(17,), kernel=(5,), stride=3, padding=2, dilation=1, groups=1),
}
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@pytest.mark.parametrize("case", SLAB_CASES.values(), ids=SLAB_CASES.keys())
def test_conv_in_slabs_matches_torch(case):
    d = len(case["size"])
    groups = case["groups"]
    x = torch.randn(2, 4, *case["size"], dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4 // groups, *case["kernel"], dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    kwargs = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    # 64 bytes: less than one row of one sample, so every chunk is a slab of one output row
    ours = unfoldconv.conv(x, w, b, groups=groups, workspace_bytes=64, **kwargs)
    theirs = TORCH_CONV[d](x, w, b, groups=groups, **kwargs)
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(theirs)
    ours_grads = torch.autograd.grad(ours, (x, w, b), grad)
    theirs_grads = torch.autograd.grad(theirs, (x, w, b), grad)
    for mine, expected in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(mine, expected)


@pytest.mark.parametrize("case", SLAB_CASES.values(), ids=SLAB_CASES.keys())
def test_locally_connected_in_slabs_matches_whole_batch(case):
    """Slabs of positions pick the right per-position kernels: against the whole-batch route."""
    groups = case["groups"]
    geometry_args = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    x = torch.randn(2, 4, *case["size"], dtype=torch.float64, requires_grad=True)
    probe = torch.zeros(groups, 4 // groups, *case["kernel"], dtype=torch.float64)
    out_size = unfoldconv.conv(x.detach(), probe, groups=groups, **geometry_args).shape[2:]
    w = torch.randn(
        *out_size, 6, 4 // groups, *case["kernel"], dtype=torch.float64, requires_grad=True
    )
    b = torch.randn(6, *out_size, dtype=torch.float64, requires_grad=True)
    slabs = unfoldconv.locally_connected(
        x, w, b, groups=groups, workspace_bytes=64, **geometry_args
    )
    whole = unfoldconv.locally_connected(
        x, w, b, groups=groups, workspace_bytes=2**30, **geometry_args
    )
    torch.testing.assert_close(slabs, whole)
    grad = torch.randn_like(whole)
    for mine, expected in zip(
        torch.autograd.grad(slabs, (x, w, b), grad), torch.autograd.grad(whole, (x, w, b), grad)
    ):
        torch.testing.assert_close(mine, expected)


# (id, workspace bytes): one chunk (forward columns kept for backward), several chunks of
# samples, slabs of one output row
BUDGETS = [("one-chunk", 2**30), ("sample-chunks", 1), ("slabs", 64)]
# (id, positions threshold of prefers_samples_last): every case sample-major / samples-last
LAYOUTS = [("sample-major", 0), ("samples-last", 10**9)]


@pytest.mark.parametrize("transposed_from", [1, 10**9], ids=["wgrad-transposed", "wgrad-plain"])
@pytest.mark.parametrize("threshold", [row[1] for row in LAYOUTS], ids=[r[0] for r in LAYOUTS])
@pytest.mark.parametrize("budget", [row[1] for row in BUDGETS], ids=[row[0] for row in BUDGETS])
@pytest.mark.parametrize("case", SLAB_CASES.values(), ids=SLAB_CASES.keys())
def test_conv_layouts_and_budgets_match_torch(
    monkeypatch, case, budget, threshold, transposed_from
):
    """Both column layouts of ChunkedConv, with and without kept forward columns, the weight
    gradient accumulated either way round (weight_gradient_transposed)."""
    monkeypatch.setattr(_chunked, "SAMPLES_LAST_POSITIONS", threshold)
    monkeypatch.setattr(_chunked, "WEIGHT_GRADIENT_TRANSPOSED_FROM", transposed_from)
    monkeypatch.setattr(_chunked, "SMALL_COLUMNS", 0)  # the tiny test shapes take it too
    d = len(case["size"])
    groups = case["groups"]
    x = torch.randn(3, 4, *case["size"], dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4 // groups, *case["kernel"], dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    kwargs = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    ours = unfoldconv.conv(x, w, b, groups=groups, workspace_bytes=budget, **kwargs)
    theirs = TORCH_CONV[d](x, w, b, groups=groups, **kwargs)
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(theirs)
    for inputs in ((x, w, b), (x,), (w,)):  # every gradient, or only one of them
        mine = torch.autograd.grad(ours, inputs, grad, retain_graph=True)
        expected = torch.autograd.grad(theirs, inputs, grad, retain_graph=True)
        for got, want in zip(mine, expected):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("case", SLAB_CASES.values(), ids=SLAB_CASES.keys())
def test_samples_last_chunks_are_the_columns_moved(case):
    """gather_chunk / scatter_chunk with samples_last: the sample-major ones, transposed."""
    geometry = make_geometry(
        len(case["size"]), case["kernel"], case["dilation"], case["padding"], case["stride"]
    )
    x = torch.randn(3, 2, *case["size"], dtype=torch.float64)
    for budget in (2**30, 1, 64):
        plan = plan_chunks(3, 2, case["size"], geometry, 8, budget)
        major, last = torch.zeros_like(x), torch.zeros_like(x)
        for chunk in plan:
            columns = gather_chunk(x, geometry, chunk)  # (n, C*K, l)
            moved = gather_chunk(x, geometry, chunk, samples_last=True)  # (C*K, l, n)
            assert torch.equal(moved, columns.permute(1, 2, 0))
            scatter_chunk(columns, geometry, chunk, major)
            scatter_chunk(moved.contiguous(), geometry, chunk, last, samples_last=True)
        assert torch.equal(last, major)

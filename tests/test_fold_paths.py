"""The torch route of the fold (``unfoldconv._engine.scatter``): both ways of adding the kernel
offsets (planned ``as_strided`` views, plain indexing) give the same sum bit for bit, against
``F.fold`` and a loop reference, with ``out=`` accumulating, for both column layouts and for
columns whose leading dims do not merge."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F

from unfoldconv import _engine
from unfoldconv._args import make_geometry
from unfoldconv._engine import scatter, scatter_samples_last


def fold_loop(columns, input_size, geometry):
    """Obviously correct: every column element added at its input position, offsets in order."""
    n, rows, _ = columns.shape
    kernel = geometry.kernel_size
    c = rows // geometry.kernel_numel
    out_size = geometry.output_size(input_size)
    output = torch.zeros(n, c, *input_size, dtype=columns.dtype)
    blocks = columns.reshape(n, c, *kernel, *out_size)
    for offset in _engine._kernel_offsets(geometry):
        for position in itertools.product(*(range(o) for o in out_size)):
            index = [
                p * s + k * dil - lo
                for p, s, k, dil, (lo, _) in zip(
                    position, geometry.stride, offset, geometry.dilation, geometry.padding
                )
            ]
            if all(0 <= i < size for i, size in zip(index, input_size)):
                output[(..., *index)] += blocks[(slice(None), slice(None), *offset, *position)]
    return output


def random_case(seed):
    rng = random.Random(seed)
    d = rng.choice([1, 2, 3])
    kernel = tuple(rng.randint(1, 3) for _ in range(d))
    stride = tuple(rng.randint(1, 3) for _ in range(d))
    dilation = tuple(rng.randint(1, 2) for _ in range(d))
    padding = tuple(rng.randint(0, 2) for _ in range(d))
    size = tuple(rng.randint(dil * (k - 1) + 1, 9) for k, dil in zip(kernel, dilation))
    geometry = make_geometry(d, kernel, dilation, padding, stride)
    return geometry, size, rng.randint(1, 3), rng.randint(1, 4)


PATHS = {  # (indexing instead of views, torch threads)
    "views": (False, 2),
    "views-one-thread": (False, 1),
    "indexing": (True, 2),  # the route under torch.compile and functorch transforms
}


@pytest.fixture(params=PATHS.values(), ids=PATHS.keys())
def fold_path(request, monkeypatch):
    indexing, threads = request.param
    monkeypatch.setattr(_engine, "indexing_needed", lambda output, blocks: indexing)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("seed", range(12))
def test_every_path_is_the_loop_sum_bit_for_bit(fold_path, seed):
    geometry, size, n, c = random_case(seed)
    out_size = geometry.output_size(size)
    generator = torch.Generator().manual_seed(seed)
    columns = torch.randn(
        n, c * geometry.kernel_numel, math.prod(out_size), dtype=torch.float64, generator=generator
    )
    folded = scatter(columns, size, geometry, compiled=False)
    assert torch.equal(folded, fold_loop(columns, size, geometry))  # same order, same sum
    if geometry.dim == 2:
        expected = F.fold(
            columns,
            size,
            geometry.kernel_size,
            geometry.dilation,
            [lo for lo, _ in geometry.padding],
            geometry.stride,
        )
        torch.testing.assert_close(folded, expected)
    # out= adds into a strided view of a larger tensor (the chunk loop's slabs)
    base = torch.randn(n + 1, c, *(s + 2 for s in size), dtype=torch.float64, generator=generator)
    target = base[(slice(1, None), slice(None), *(slice(1, 1 + s) for s in size))]
    start = target.clone()
    returned = scatter(columns, size, geometry, compiled=False, out=target)
    assert returned.data_ptr() == target.data_ptr()
    torch.testing.assert_close(target, start + folded, rtol=1e-12, atol=1e-12)
    # columns whose (N, C) dims cannot merge into one: chunks cut along N alone
    permuted = columns.transpose(0, 1).contiguous().transpose(0, 1)  # (N, C*K, L), N inner
    assert torch.equal(scatter(permuted, size, geometry, compiled=False), folded)


@pytest.mark.parametrize("seed", range(6))
def test_samples_last_fold_is_the_fold_moved(fold_path, seed):
    geometry, size, n, c = random_case(seed + 100)
    out_size = geometry.output_size(size)
    columns = torch.randn(n, c * geometry.kernel_numel, math.prod(out_size), dtype=torch.float64)
    moved = columns.permute(1, 2, 0).contiguous()  # (C*K, L, N)
    folded = scatter_samples_last(moved, size, geometry)  # (C, *size, N)
    expected = fold_loop(columns, size, geometry)
    assert torch.equal(folded.permute(-1, *range(folded.dim() - 1)), expected)

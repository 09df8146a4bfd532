"""The compiled CPU fold (``unfoldconv._cpu_fold``): bit-identical to the torch route, and when
``scatter`` takes it (and when it must not)."""

from __future__ import annotations

import math
import threading

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from tests.helpers import params
from unfoldconv import _chunked, _cpu_fold, _work_sharing, layers
from unfoldconv._engine import scatter
from unfoldconv._geometry import Geometry

pytest.importorskip("numba")  # a dependency; absent only on Pythons numba has no wheels for

# (id, batch, channels, input size, kernel, dilation, padding (lo, hi) per dim, stride, flip)
GEOMETRIES = [
    ("1d-k3-p1", 2, 3, (11,), (3,), (1,), ((1, 1),), (1,), False),
    ("1d-k4-s3-d2-asym", 2, 2, (17,), (4,), (2,), ((0, 3),), (3,), False),
    ("2d-k3-p1", 2, 3, (7, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), False),
    ("2d-k3-s2-tf-same", 2, 4, (9, 8), (3, 3), (1, 1), ((0, 1), (0, 1)), (2, 2), False),
    ("2d-k2x3-s(3,1)-d(1,2)", 1, 2, (10, 9), (2, 3), (1, 2), ((1, 0), (2, 2)), (3, 1), False),
    ("2d-k3-s2-flip", 2, 3, (8, 7), (3, 3), (1, 1), ((1, 1), (0, 2)), (2, 1), True),
    ("2d-k5-pad-wider-than-image", 1, 2, (3, 4), (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1), False),
    ("3d-k3-s(2,1,3)-p1", 2, 2, (6, 5, 7), (3, 3, 3), (1, 1, 1), ((1, 1),) * 3, (2, 1, 3), False),
    ("3d-k2-d2-flip-asym", 1, 3, (6, 6, 5), (2, 2, 2), (2, 1, 2), ((0, 1), (1, 0), (1, 1)),
     (1, 2, 1), True),
    ("4d-k2x3x1x2-s(1,2,1,3)", 2, 2, (4, 5, 3, 6), (2, 3, 1, 2), (1, 1, 1, 1),
     ((0, 0), (1, 1), (0, 0), (1, 0)), (1, 2, 1, 3), False),
    ("4d-k3-d(1,2,1,1)-flip", 1, 2, (5, 6, 4, 4), (3, 3, 3, 3), (1, 2, 1, 1),
     ((1, 1), (0, 0), (1, 0), (0, 1)), (2, 1, 1, 1), True),
    ("2d-n0", 0, 3, (7, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (2, 1), False),
]  # fmt: skip

DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8]


def _columns(n, c, size, geometry, dtype, generator):
    shape = (n, c * geometry.kernel_numel, math.prod(geometry.output_size(size)))
    if dtype.is_floating_point:
        return torch.randn(shape, dtype=dtype, generator=generator)
    # uint8 and int sums wrap around the same way on both routes
    return torch.randint(0, 250, shape, generator=generator).to(dtype)


def _torch_route(columns, size, geometry):
    with unfoldconv.backend("torch"):
        return scatter(columns, size, geometry)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the engine's calls into the compiled fold."""
    calls = []
    fold = _cpu_fold.fold

    def counted(*args):
        calls.append(args[0].dtype)
        return fold(*args)

    monkeypatch.setattr(_cpu_fold, "fold", counted)
    return calls


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n, c, size, kernel, dilation, padding, stride, flip", params(GEOMETRIES))
def test_kernel_equals_torch_route(n, c, size, kernel, dilation, padding, stride, flip, dtype):
    geometry = Geometry(kernel, dilation, padding, stride, flip)
    columns = _columns(n, c, size, geometry, dtype, torch.Generator().manual_seed(0))
    result = _cpu_fold.fold(columns, size, geometry)
    expected = _torch_route(columns, size, geometry)
    assert result.dtype == expected.dtype
    assert result.shape == expected.shape
    assert torch.equal(result, expected)


@pytest.mark.parametrize("n, c, size, kernel, dilation, padding, stride, flip", params(GEOMETRIES))
def test_non_contiguous_columns(n, c, size, kernel, dilation, padding, stride, flip):
    geometry = Geometry(kernel, dilation, padding, stride, flip)
    columns = _columns(n, c, size, geometry, torch.float64, torch.Generator().manual_seed(1))
    strided = columns.transpose(0, 2).contiguous().transpose(0, 2)  # same values, other strides
    assert not strided.is_contiguous() or strided.numel() <= 1 or n == 0
    assert torch.equal(
        _cpu_fold.fold(strided, size, geometry), _torch_route(columns, size, geometry)
    )


@pytest.mark.parametrize("threshold", [1, 1 << 40], ids=["shared-by-threads", "serial"])
def test_thread_sharing_and_serial_paths(monkeypatch, threshold):
    monkeypatch.setattr(_work_sharing, "SERIAL_BELOW", threshold)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for geometry, size in [
            (Geometry((3, 3), (1, 1), ((1, 1), (1, 1)), (2, 2)), (16, 15)),
            (Geometry((3,) * 3, (1,) * 3, ((1, 1),) * 3, (1, 2, 1)), (6, 7, 5)),
        ]:
            columns = _columns(5, 7, size, geometry, torch.float32, torch.Generator())
            assert torch.equal(
                _cpu_fold.fold(columns, size, geometry), _torch_route(columns, size, geometry)
            )
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("chunk", [None, 1, 5])
@pytest.mark.parametrize("rows", [1, 2, 7, 48, 1000])
def test_run_rows_covers_each_row_once(monkeypatch, rows, chunk):
    monkeypatch.setattr(_work_sharing, "SERIAL_BELOW", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    seen, lock = [], threading.Lock()

    def body(r0, r1):
        with lock:
            seen.extend(range(r0, r1))

    try:
        _work_sharing.run_rows(body, rows, work=10**9, chunk=chunk)
    finally:
        torch.set_num_threads(threads)
    assert sorted(seen) == list(range(rows))


def test_run_rows_raises_the_error_of_a_pool_thread(monkeypatch):
    monkeypatch.setattr(_work_sharing, "SERIAL_BELOW", 1)
    monkeypatch.setattr(threading.current_thread(), "name", "caller")

    def body(r0, r1):
        if threading.current_thread().name != "caller":
            raise ValueError(f"rows {r0}:{r1}")
        threading.Event().wait(0.01)  # leave chunks for the pool

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="rows"):
            _work_sharing.run_rows(body, 64, work=10**9)
    finally:
        torch.set_num_threads(threads)


# (id, dtype): the kernel does not cover these; scatter must take the torch route
FALLBACK_DTYPES = [
    ("float16", torch.float16),
    ("bfloat16", torch.bfloat16),
    ("complex64", torch.complex64),
    ("bool", torch.bool),
]
STRIDED = Geometry((3, 3), (1, 1), ((1, 1), (1, 1)), (2, 2))  # passes the switch rule


@pytest.mark.parametrize("dtype", params(FALLBACK_DTYPES))
def test_dtypes_without_kernel_take_torch_route(kernel_calls, dtype):
    columns = torch.randn(2, 2 * 9, 16).to(dtype)
    result = scatter(columns, (8, 8), STRIDED)
    assert kernel_calls == []
    assert torch.equal(result, _torch_route(columns, (8, 8), STRIDED))
    if dtype != torch.bool:
        expected = F.fold(columns.to(torch.complex128), (8, 8), 3, padding=1, stride=2)
        torch.testing.assert_close(result.to(torch.complex128), expected, rtol=1e-2, atol=5e-2)


def test_scatter_takes_kernel_where_it_pays_off(kernel_calls):
    columns = torch.randn(2, 2 * 9, 16)
    scatter(columns, (8, 8), STRIDED)  # stride 2
    scatter(torch.randn(2, 18, 64), (8, 8), Geometry((3, 3), (1, 1), ((1, 1),) * 2, (1, 1)))
    assert len(kernel_calls) == 2
    scatter(torch.randn(2, 18, 1024), (32, 32), Geometry((3, 3), (1, 1), ((1, 1),) * 2, (1, 1)))
    assert len(kernel_calls) == 2  # stride 1 and a 32x32 image: the torch route is faster


def test_switch_rule():
    stride1 = Geometry((3, 3), (1, 1), ((1, 1),) * 2, (1, 1))
    assert _cpu_fold.kernel_pays_off((16, 16), stride1)
    assert not _cpu_fold.kernel_pays_off((32, 32), stride1)
    assert _cpu_fold.kernel_pays_off((32, 32), STRIDED)
    one_offset = Geometry((1, 1), (1, 1), ((0, 0),) * 2, (1, 1))
    assert not _cpu_fold.kernel_pays_off((6, 6), one_offset)  # 1x1: fold is one copy


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda mp: mp.setattr(_cpu_fold, "_kernel", lambda: None), id="no-numba"),
        pytest.param(lambda mp: mp.setenv("UNFOLDCONV_BACKEND", "torch"), id="backend-torch"),
        pytest.param(
            lambda mp: mp.setattr(torch.compiler, "is_compiling", lambda: True), id="compiling"
        ),
    ],
)
def test_torch_route_runs_when_kernel_must_not(monkeypatch, kernel_calls, setup):
    columns = torch.randn(2, 2 * 9, 16, dtype=torch.float64)
    expected = F.fold(columns, (8, 8), 3, padding=1, stride=2)
    setup(monkeypatch)
    assert not _cpu_fold.wanted(columns, (8, 8), STRIDED)
    assert torch.equal(scatter(columns, (8, 8), STRIDED), _torch_route(columns, (8, 8), STRIDED))
    torch.testing.assert_close(scatter(columns, (8, 8), STRIDED), expected)
    assert kernel_calls == []


def test_no_kernel_for_columns_that_need_a_graph(kernel_calls):
    columns = torch.randn(2, 2 * 9, 16, requires_grad=True)
    assert not _cpu_fold.wanted(columns, (8, 8), STRIDED)
    with torch.no_grad():
        assert _cpu_fold.wanted(columns, (8, 8), STRIDED)


# (id, input size, kernel, padding, stride, dilation): through the public fold
PUBLIC = [
    ("k3-s2-p1", (16, 16), 3, 1, 2, 1),
    ("k3-s1-p1-small", (12, 10), 3, 1, 1, 1),
    ("k2-s3-d2", (17, 15), 2, 0, 3, 2),
]


@pytest.mark.parametrize("size, kernel, padding, stride, dilation", params(PUBLIC))
def test_public_fold_and_its_gradient_match_torch(kernel_calls, size, kernel, padding, stride,
                                                  dilation):  # fmt: skip
    kwargs = dict(kernel_size=kernel, padding=padding, stride=stride, dilation=dilation)
    blocks = math.prod((s + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for s in size)
    columns = torch.randn(3, 4 * kernel**2, blocks, dtype=torch.float64, requires_grad=True)
    result = unfoldconv.fold(columns, size, **kwargs)
    expected = F.fold(columns, size, **kwargs)
    torch.testing.assert_close(result, expected)
    grad = torch.randn_like(result)
    (ours,) = torch.autograd.grad(result, columns, grad)
    (theirs,) = torch.autograd.grad(expected, columns, grad)
    torch.testing.assert_close(ours, theirs)
    assert kernel_calls == [torch.float64]


@pytest.mark.parametrize("compiled", [True, False], ids=["switch-on", "switch-off"])
@pytest.mark.parametrize("stride", [1, 2], ids=["s1", "s2"])
def test_conv_backward_fold_switch_matches_native(monkeypatch, kernel_calls, stride, compiled):
    """ChunkedConv folds through the kernel only if CHUNKED_CONV_COMPILED_FOLD; equal either way."""
    monkeypatch.setattr(_chunked, "CHUNKED_CONV_COMPILED_FOLD", compiled)
    torch.manual_seed(0)
    native = torch.nn.Conv2d(3, 5, 3, stride=stride, padding=1, dtype=torch.float64)
    ours = layers.Conv2d(3, 5, 3, stride=stride, padding=1, dtype=torch.float64)
    ours.load_state_dict(native.state_dict())
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(4, 5, *native(x).shape[2:], dtype=torch.float64)
    expected = torch.autograd.grad(native(x), (x, native.weight), grad)
    result = torch.autograd.grad(ours(x), (x, ours.weight), grad)
    torch.testing.assert_close(result, expected)
    assert bool(kernel_calls) == compiled  # the input gradient was folded by the kernel or not

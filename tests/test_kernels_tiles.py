"""The tiled unfold and fold kernels (stride phases, constexpr sizes) and their launch plans.

Default suite (CPU, Triton's interpreter): random geometries for d = 1..4 against ``F.unfold`` /
``F.fold`` and the torch route, bit for bit (fold too: same order of adds); stride 2 and 3,
dilation, padding, input dilation (the transposed unfold), flipped offsets, N = 0,
non-contiguous and channels_last inputs, float32/float16/bfloat16; tiles shrunk so one call
spans several row, outer and inner tiles; the int64 index path forced on small tensors (also
for the implicit-GEMM conv kernels); fold bit-identical across repeats; the phase formulas
against every offset that reaches; the plan cache and the direct CUDA launch with a fake
compiled kernel. Compiled for sm_90 without a GPU: every kernel form, every dtype (``slow``).
``cuda``-marked: the same checks compiled, the direct launch against Triton's own, and int64
offsets of the implicit-GEMM kernels.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from unfoldconv import fold, kernels, unfold, unfold_transpose
from unfoldconv._args import make_geometry
from unfoldconv._engine import gather, scatter

pytest.importorskip("triton")

from unfoldconv.kernels import _conv, _conv_function, _fold, _launch, _unfold

needs_cuda = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    """Triton's interpreter for CPU tensors; plans rebuilt for each test (tiles may change)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("UNFOLDCONV_BACKEND", raising=False)
    monkeypatch.delenv("UNFOLDCONV_CONV_ROUTE", raising=False)
    _launch.clear_plans()
    yield
    _launch.clear_plans()


@pytest.fixture
def small_tiles(monkeypatch):
    """64-element tiles: tiny shapes then span several row, outer and inner tiles."""
    monkeypatch.setattr(_launch, "TILE", 64)


@pytest.fixture
def launches(monkeypatch):
    """Counts the unfold and fold launches (the kernels really ran)."""
    counts = {"unfold": 0, "fold": 0}
    call = _launch.Launcher.__call__

    def counted(launcher, *tensors):
        counts["unfold" if launcher.kernel is _unfold._unfold_kernel else "fold"] += 1
        return call(launcher, *tensors)

    monkeypatch.setattr(_launch.Launcher, "__call__", counted)
    return counts


def on(backend: str, op, *args, **kwargs):
    with unfoldconv.backend(backend):
        return op(*args, **kwargs)


def _random_case(rng: random.Random, d: int):
    """``(input shape, unfold kwargs)``: a random window that fits a small random input."""
    kernel = [rng.randint(1, 3) for _ in range(d)]
    dilation = [rng.choice([1, 1, 2]) for _ in range(d)]
    stride = [rng.choice([1, 2, 2, 3]) for _ in range(d)]
    padding = [rng.randint(0, 2) for _ in range(d)]
    extent = {1: 13, 2: 8, 3: 5, 4: 4}[d]
    size = [
        max(dil * (k - 1) + 1 - 2 * p, 1) + rng.randint(0, extent)
        for k, dil, p in zip(kernel, dilation, padding)
    ]
    shape = (rng.randint(1, 2), rng.randint(1, 3), *size)
    kwargs = {"kernel_size": tuple(kernel), "dilation": tuple(dilation)}
    kwargs |= {"padding": tuple(padding), "stride": tuple(stride)}
    return shape, kwargs


RANDOM_CASES = [(d, seed) for d in (1, 2, 3, 4) for seed in range(2)]


@pytest.mark.parametrize("tiles", ["default", "small"])
@pytest.mark.parametrize("d, seed", RANDOM_CASES, ids=[f"{d}d-{s}" for d, s in RANDOM_CASES])
def test_random_geometries_match_torch_bit_for_bit(d, seed, tiles, monkeypatch, launches):
    if tiles == "small":
        monkeypatch.setattr(_launch, "TILE", 64)
    shape, kwargs = _random_case(random.Random(1000 * d + seed), d)
    x = torch.randn(shape)
    columns = on("triton", unfold, x, **kwargs)
    assert torch.equal(columns, on("torch", unfold, x, **kwargs))
    y = torch.randn_like(columns)
    folded = on("triton", fold, y, shape[2:], **kwargs)
    assert torch.equal(folded, on("torch", fold, y, shape[2:], **kwargs))
    if d == 2:
        assert torch.equal(columns, F.unfold(x, **kwargs))
        torch.testing.assert_close(folded, F.fold(y, shape[2:], **kwargs))
    assert launches == {"unfold": 1, "fold": 1}


def test_stride_phases_and_tile_splits(small_tiles, launches):
    """Stride 2 and 3 with dilation 2 (phases no offset reaches), shapes wider than a tile."""
    cases = [
        ((2, 3, 40), {"kernel_size": (3,), "stride": 3, "padding": 2, "dilation": 2}),
        ((1, 2, 9, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
        ((1, 2, 10, 9), {"kernel_size": (3, 2), "stride": (2, 3), "dilation": 2}),
        ((1, 1, 6, 5, 7), {"kernel_size": 3, "stride": (3, 2, 2), "padding": (1, 0, 2)}),
    ]
    for shape, kwargs in cases:
        columns = torch.randn_like(on("torch", unfold, torch.randn(shape), **kwargs))
        folded = on("triton", fold, columns, shape[2:], **kwargs)
        assert torch.equal(folded, on("torch", fold, columns, shape[2:], **kwargs))
    assert launches["fold"] == len(cases)


@pytest.mark.parametrize("kernel_size, dilation, stride", [(3, 1, 2), (3, 2, 2), (4, 3, 3)])
@pytest.mark.parametrize("input_dilation", [1, 2, 3])
def test_phase_offsets_are_exactly_the_reaching_ones(kernel_size, dilation, stride, input_dilation):
    for pad in range(-2, 4):
        phases = _fold.phase_offsets(kernel_size, dilation, pad, stride, input_dilation)
        for x in range(12):
            virtual = x * input_dilation + pad
            reaching = [k for k in range(kernel_size) if (virtual - k * dilation) % stride == 0]
            assert phases[x % len(phases)] == reaching


def test_kernel_3_stride_2_visits_4_2_2_1_offsets():
    per_dim = _fold.phase_offsets(3, 1, 1, 2)
    counts = sorted(len(a) * len(b) for a, b in itertools.product(per_dim, per_dim))
    assert counts == [1, 2, 2, 4]  # of 9 offsets: 9 loads per 4 outputs, not 36


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_half_precision_dtypes(dtype, launches):
    x = torch.randn(2, 3, 7, 6).to(dtype)
    kwargs = {"kernel_size": 3, "stride": 2, "padding": 1}
    columns = on("triton", unfold, x, **kwargs)
    assert columns.dtype == dtype
    assert torch.equal(columns, F.unfold(x.float(), **kwargs).to(dtype))
    y = torch.randn_like(columns)
    folded = on("triton", fold, y, (7, 6), **kwargs)
    exact = F.fold(y.double(), (7, 6), **kwargs)
    # float32 sums, one rounding (the interpreter truncates to bfloat16: one ulp)
    ulps = {torch.float16: 0.5, torch.bfloat16: 1.0, torch.float32: 1.0}[dtype]
    torch.testing.assert_close(
        folded.double(), exact, rtol=ulps * torch.finfo(dtype).eps, atol=1e-6
    )


def test_layouts_and_empty_batch(small_tiles, launches):
    kwargs = {"kernel_size": 2, "stride": 2, "padding": 1}
    base = torch.randn(2, 4, 6, 7)
    inputs = [
        base.to(memory_format=torch.channels_last),
        base[:, ::2, 1:, ::2],
        base.transpose(2, 3),
        torch.randn(2, 3, 4, 5, 4).to(memory_format=torch.channels_last_3d),
        torch.randn(0, 4, 6, 7),
    ]
    for x in inputs:
        columns = on("triton", unfold, x, **kwargs)
        assert torch.equal(columns, on("torch", unfold, x.contiguous(), **kwargs))
        strided = torch.randn(columns.shape[::-1]).permute(2, 1, 0)  # columns of other strides
        size = x.shape[2:]
        folded = on("triton", fold, strided, size, **kwargs)
        assert torch.equal(folded, on("torch", fold, strided.contiguous(), size, **kwargs))
    assert launches == {"unfold": 4, "fold": 4}  # N = 0 launches nothing


@pytest.mark.parametrize("d", [1, 2, 3])
def test_transposed_unfold_and_adjoint_with_strides_2_and_3(d, monkeypatch):
    """Input dilation (the transposed conv's stride) and flipped offsets, crops included."""
    if d < 3:
        monkeypatch.setattr(_launch, "TILE", 64)
    shape = (2, 2, *(3,) * d)
    kwargs = {"kernel_size": 3, "stride": (2, 3, 2)[:d], "padding": (1, 2, 0)[:d]}
    kwargs |= {"output_padding": (1, 0, 1)[:d], "dilation": (1, 2, 1)[:d]}
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    expected = on("torch", unfold_transpose, x, **kwargs)
    assert torch.equal(on("triton", unfold_transpose, x.detach(), **kwargs), expected)
    weights = torch.randn_like(expected)
    (grad,) = torch.autograd.grad(expected, x, weights)
    with unfoldconv.backend("triton"):
        (got,) = torch.autograd.grad(unfold_transpose(x, **kwargs), x, weights)
    torch.testing.assert_close(got, grad)


def test_gradients_through_the_tiled_kernels(small_tiles):
    x = torch.randn(1, 2, 7, 5, dtype=torch.float64, requires_grad=True)
    kwargs = {"kernel_size": (3, 2), "stride": (2, 3), "dilation": (1, 2), "padding": 1}
    columns = torch.randn_like(on("torch", unfold, x.detach(), **kwargs), requires_grad=True)
    with unfoldconv.backend("triton"):
        assert torch.autograd.gradcheck(lambda t: unfold(t, **kwargs), x, fast_mode=True)
        assert torch.autograd.gradcheck(
            lambda t: fold(t, (7, 5), **kwargs), columns, fast_mode=True
        )


def test_fold_bit_identical_across_repeats(small_tiles):
    kwargs = {"kernel_size": 3, "stride": 2, "padding": 1}
    columns = torch.randn(2, 27, 16) * 1e3
    first = on("triton", fold, columns, (8, 8), **kwargs)
    for _ in range(3):
        assert torch.equal(on("triton", fold, columns, (8, 8), **kwargs), first)


def test_forced_int64_index_path(monkeypatch):
    """INDEX_64 on small tensors: every kernel's int64 arithmetic, through the interpreter."""
    monkeypatch.setattr(_launch, "sizes_need_int64", lambda *pairs: True)
    seen = []
    call = _launch.Launcher.__call__

    def spy(launcher, *tensors):
        index = _launch.parameter_names(launcher.kernel).index("INDEX_64")
        seen.append(launcher.tail[index - len(tensors)])
        return call(launcher, *tensors)

    monkeypatch.setattr(_launch.Launcher, "__call__", spy)
    geometry = make_geometry(2, 3, 2, 1, (2, 1))
    x = torch.randn(2, 3, 7, 6)
    columns = on("triton", gather, x, geometry)
    assert torch.equal(columns, on("torch", gather, x, geometry))
    y = torch.randn_like(columns)
    assert torch.equal(
        on("triton", scatter, y, (7, 6), geometry), on("torch", scatter, y, (7, 6), geometry)
    )
    # flipped offsets and an input dilation: the transposed unfold and its adjoint
    x = torch.randn(1, 2, 4, 3)
    tuples = ((3, 2), (2, 3), (1, 0), (1, 2), (1, 2))  # kernel, stride, pad, out pad, dilation
    columns = kernels.unfold_transpose(x, *tuples)
    expected = on("torch", unfold_transpose, x, *tuples)
    assert torch.equal(columns, expected)
    y = torch.randn_like(columns)
    adjoint = kernels.unfold_transpose_adjoint(y, (4, 3), *tuples)
    x64 = x.double().requires_grad_()
    (grad,) = torch.autograd.grad(on("torch", unfold_transpose, x64, *tuples), x64, y.double())
    torch.testing.assert_close(adjoint, grad.float())  # float32 sums against float64 ones
    # the implicit-GEMM kernels: forward, input gradient, weight gradient
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    with unfoldconv.backend("triton"):
        y = unfoldconv.conv(x, weight, padding=1, stride=2)
        grads = torch.autograd.grad(y.square().sum(), [x, weight])
    expected = F.conv2d(x, weight, padding=1, stride=2)
    torch.testing.assert_close(y, expected)
    for got, want in zip(grads, torch.autograd.grad(expected.square().sum(), [x, weight])):
        torch.testing.assert_close(got, want)
    assert len(seen) == 2 + 2 + 3 and all(seen)


# ---- launch plans -------------------------------------------------------------------------


def test_tiles_are_powers_of_two_sized_to_the_grid():
    for rows, grid in [(27648, (32, 32)), (55296, (4, 4)), (9, (6, 6)), (2, (1000,))]:
        blocks = _launch.position_tile(rows, grid)
        sizes = [blocks[name] for name in ("BLOCK_R", "BLOCK_O", "BLOCK_W")]
        assert all(size & (size - 1) == 0 for size in sizes)
        assert math.prod(sizes) <= _launch.TILE
    assert _launch.position_tile(27648, (32, 32)) == {
        "SPLIT": 1,
        "BLOCK_R": 2,
        "BLOCK_O": 32,
        "BLOCK_W": 32,
    }
    assert _launch.position_tile(64, (16, 16, 16))["BLOCK_W"] == 16  # the last dim, no division
    assert _launch.position_tile(2, (1000,)) == {
        "SPLIT": 0,
        "BLOCK_R": 2,
        "BLOCK_O": 1,
        "BLOCK_W": 1024,
    }
    # 3 x 3 grid: the last dim alone idles 1 lane in 4 and 4 of 16 rows... merged: 9 of 16
    assert _launch.position_tile(100, (3, 3))["SPLIT"] in (0, 1)


def test_plans_are_cached_per_shape_and_window(monkeypatch):
    monkeypatch.setattr(_launch.Launcher, "__call__", lambda launcher, *tensors: None)
    geometry = make_geometry(2, 3, 1, 1, 1)
    x = torch.randn(2, 3, 8, 8)
    kernels.unfold(x, geometry)
    built = _unfold._geometry_plan.cache_info().misses
    for _ in range(3):
        kernels.unfold(torch.randn(2, 3, 8, 8), geometry)
    assert _unfold._geometry_plan.cache_info().misses == built
    kernels.unfold(x.to(memory_format=torch.channels_last), geometry)  # other strides: new plan
    assert _unfold._geometry_plan.cache_info().misses == built + 1


class _FakeCompiled:
    """Stands for Triton's ``CompiledKernel``: ``compiled[grid](*args)`` records the launch."""

    def __init__(self, calls):
        self.calls = calls

    def __getitem__(self, grid):
        return lambda *args: self.calls.append(("direct", grid, args))


class _FakeJit:
    def __init__(self, calls):
        self.calls = calls

    def __getitem__(self, grid):
        def run(*args, **options):
            self.calls.append(("jit", grid, args, options))
            return _FakeCompiled(self.calls)

        return run


def test_launcher_calls_the_warmed_kernel_directly_per_alignment(monkeypatch):
    """The first CUDA launch of a plan goes through Triton's ``run`` (binding, compile cache);
    later ones call the compiled kernel with the same arguments, per pointer alignment."""
    calls = []
    monkeypatch.setattr(_launch, "kernel_for", lambda kernel, device: _FakeJit(calls))
    named = {
        name: index for index, name in enumerate(_launch.parameter_names(_unfold._unfold_kernel))
    }
    tail = (7, 8, 9, (1, 2))
    named.update({"num_warps": 4})
    launcher = _launch.Launcher(_unfold._unfold_kernel, (5, 1, 1), 2, tail, named)
    assert launcher.options == {"num_warps": 4}
    assert launcher.tail[:4] == tail and launcher.tail[4] == named["CHANNELS"]
    a, b = torch.empty(8), torch.empty(8)
    device = torch.device("cuda", 0)
    launcher._launch_cuda((a, b), device)
    launcher._launch_cuda((a, b), device)
    launcher._launch_cuda((a[1:], b), device)  # 4-byte offset: another specialisation
    launcher._launch_cuda((a[1:], b), device)
    kinds = [call[0] for call in calls]
    assert kinds == ["jit", "direct", "jit", "direct"]
    assert calls[1][2] == (a, b, *launcher.tail) and calls[1][1] == (5, 1, 1)
    monkeypatch.setattr(_launch, "DIRECT", False)
    fresh = _launch.Launcher(_unfold._unfold_kernel, (5, 1, 1), 2, tail, named)
    fresh._launch_cuda((a, b), device)
    fresh._launch_cuda((a, b), device)
    assert [call[0] for call in calls[4:]] == ["jit", "jit"]


def test_launcher_names_missing_arguments():
    with pytest.raises(TypeError, match=r"Launcher of _fold_kernel misses arguments \['CHANNELS'"):
        _launch.Launcher(_fold._fold_kernel, (1, 1, 1), 2, (1, 2, 3, 4), {})


# ---- compiled for an H100 without one -------------------------------------------------------


def _recorded(monkeypatch, calls):
    """``(kernel, args, options)`` of each planned unfold / fold launch of ``calls``."""
    recorded = []

    def record(launcher, *tensors):
        recorded.append((launcher.kernel, (*tensors, *launcher.tail), launcher.options))

    monkeypatch.setattr(_launch.Launcher, "__call__", record)
    for call in calls:
        call()
    return recorded


def _forms(dtype):
    """Calls covering each kernel form for ``dtype``: 2-d stride 1 and 2 (phases), 3-d merged
    inner dims, the transposed unfold (input dilation, flip) and its adjoint."""
    s1, s2 = make_geometry(2, 3, 1, 1, 1), make_geometry(2, 3, 1, 1, 2)
    x = torch.ones(32, 16, 32, 32, dtype=dtype)
    cols1, cols2 = torch.ones(32, 144, 1024, dtype=dtype), torch.ones(32, 144, 256, dtype=dtype)
    return [
        lambda: kernels.unfold(x, s1),
        lambda: kernels.unfold(x, s2),
        lambda: kernels.fold(cols1, (32, 32), s1),
        lambda: kernels.fold(cols2, (32, 32), s2),
        lambda: kernels.fold(
            torch.ones(2, 8, 27, dtype=dtype), (4, 4, 4), make_geometry(3, 2, 1, 0, 1)
        ),
        lambda: kernels.unfold_transpose(
            torch.ones(2, 3, 4, 5, dtype=dtype), (3, 2), (2, 3), (1, 0), (1, 0), (1, 2)
        ),
        lambda: kernels.unfold_transpose_adjoint(
            torch.ones(1, 4, 63, dtype=dtype), (4, 5), (2, 2), (2, 2), (0, 1), (1, 0), (1, 1)
        ),
    ]


def _compile(kernel, args, options):
    from tests.test_kernels_triton import _compile_for_sm90

    compiled = _compile_for_sm90(kernel, args, options)
    assert "cubin" in compiled.asm
    return compiled.asm["ptx"]


def test_tiled_kernels_compile_for_h100(monkeypatch):
    """float32 forms, and int64 forms of both kernels, compile for sm_90 without a division
    by a runtime value per element; stride-1 stores are vectorised."""
    pytest.importorskip("triton.backends.nvidia")
    recorded = _recorded(monkeypatch, _forms(torch.float32))
    assert len(recorded) == 7
    for index, (kernel, args, options) in enumerate(recorded):
        ptx = _compile(kernel, args, options)
        if index in (0, 2):  # stride 1: 16-byte stores along the rows
            assert "st.global.v4" in ptx
        if index in (0, 1, 2):  # sizes constexpr: divisions by constants (multiply-shift)
            assert "div.s32" not in ptx and "rem.s32" not in ptx
    monkeypatch.setattr(_launch, "sizes_need_int64", lambda *pairs: True)
    _launch.clear_plans()
    for kernel, args, options in _recorded(monkeypatch, _forms(torch.float32)[2:4]):
        ptx = _compile(kernel, args, options)
        assert "mul.wide" in ptx or ".s64" in ptx


@pytest.mark.slow
@pytest.mark.parametrize("dtype", sorted(kernels.SUPPORTED_DTYPES, key=str), ids=str)
def test_every_tiled_kernel_form_and_dtype_compiles_for_h100(dtype, monkeypatch):
    pytest.importorskip("triton.backends.nvidia")
    for kernel, args, options in _recorded(monkeypatch, _forms(dtype)):
        _compile(kernel, args, options)


def test_int64_conv_kernels_compile_for_h100(monkeypatch):
    """The implicit-GEMM kernels' int64 forms (forward, input gradient by phase, weight
    gradient) compile for sm_90."""
    pytest.importorskip("triton.backends.nvidia")
    from tests.test_kernels_conv import _compile_and_check, _recorded_conv_launches, _tiles

    monkeypatch.setattr(_launch, "sizes_need_int64", lambda *pairs: True)
    monkeypatch.setattr(_conv, "cudnn_allow_tf32", lambda: True)
    for kernel, args, constants, tile in _recorded_conv_launches(monkeypatch, [torch.bfloat16]):
        assert constants["INDEX_64"]
        _compile_and_check(kernel, args, constants, _tiles(tile)[-1])


# ---- CUDA --------------------------------------------------------------------------------------


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "jit-run"])
@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((32, 96, 32, 32), {"kernel_size": 3, "padding": 1}),
        ((32, 96, 32, 32), {"kernel_size": 3, "padding": 1, "stride": 2}),
        ((4, 16, 16, 16, 16), {"kernel_size": 3, "stride": 2, "dilation": (1, 2, 1)}),
        ((2, 4, 6, 6, 6, 6), {"kernel_size": 2, "stride": 3, "padding": 1}),
    ],
    ids=["2d-s1", "2d-s2", "3d-s2", "4d-s3"],
)
@needs_cuda[0]
@needs_cuda[1]
def test_cuda_tiled_kernels_match_torch_route(shape, kwargs, direct, monkeypatch):
    monkeypatch.setattr(_launch, "DIRECT", direct)
    launchers = []
    launch_cuda = _launch.Launcher._launch_cuda

    def spy(launcher, tensors, device):
        launchers.append(launcher)
        return launch_cuda(launcher, tensors, device)

    monkeypatch.setattr(_launch.Launcher, "_launch_cuda", spy)
    x = torch.randn(shape, device="cuda")
    for layout in (x, x.transpose(1, -1).contiguous().transpose(1, -1)):
        for _ in range(3):  # first call through Triton's run, then the warmed kernel
            columns = on("triton", unfold, layout, **kwargs)
            assert torch.equal(columns, on("torch", unfold, layout, **kwargs))
    y = torch.randn_like(columns)
    expected = on("torch", fold, y.double(), shape[2:], **kwargs).float()
    first = on("triton", fold, y, shape[2:], **kwargs)
    torch.testing.assert_close(first, expected)
    for _ in range(5):
        assert torch.equal(on("triton", fold, y, shape[2:], **kwargs), first)
    assert len(launchers) == 6 + 6
    assert all(bool(launcher._runners) == direct for launcher in launchers)


@needs_cuda[0]
@needs_cuda[1]
def test_cuda_conv_int64_offsets():
    """Implicit-GEMM forward, input gradient and weight gradient on float16 tensors of more
    than 2**31 elements (about 17 GiB in all): the int64 index path against cuDNN on the
    windows at the far end, where an int32 offset wraps."""
    height, width = 2**14, 2**14 + 8
    x = torch.randn(1, 8, height, width, device="cuda", dtype=torch.float16)
    assert _launch.needs_int64(x)
    weight = torch.randn(8, 8, 3, 3, device="cuda", dtype=torch.float16) / 8
    geometry = make_geometry(2, 3, 1, 0, 1)
    y = _conv_function.conv_forward(x, weight, None, geometry, 1)
    tail = x[..., -6:, -6:].float()
    torch.testing.assert_close(
        y[..., -4:, -4:].float(), F.conv2d(tail, weight.float()), rtol=1e-2, atol=1e-2
    )
    grad = torch.randn_like(y)
    grad_input = _conv_function.conv_input_grad(grad, weight, None, (height, width), geometry, 1)
    corner = x[..., -8:, -8:].float().requires_grad_()  # the last 4 x 4 input positions see
    (expected,) = torch.autograd.grad(  # only the last 6 x 6 output gradients
        F.conv2d(corner, weight.float()), corner, grad[..., -6:, -6:].float()
    )
    torch.testing.assert_close(
        grad_input[..., -4:, -4:].float(), expected[..., -4:, -4:], rtol=1e-2, atol=1e-2
    )
    del grad_input
    # the weight gradient of one output row range against the far-end rows
    mask = torch.zeros_like(grad)
    mask[..., -16:, :] = 1
    grad_weight = _conv_function.conv_weight_grad(x, grad * mask, weight.shape, geometry, 1)
    expected = torch.nn.grad.conv2d_weight(
        x[..., -18:, :].float(), weight.shape, grad[..., -16:, :].float()
    )
    torch.testing.assert_close(grad_weight.float(), expected, rtol=2e-2, atol=2e-1)

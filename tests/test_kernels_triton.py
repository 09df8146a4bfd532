"""The Triton kernels against the torch route and torch's own ops.

Default suite (CPU): every kernel runs through Triton's interpreter (``TRITON_INTERPRET=1``, set
per test) with the backend forced to ``"triton"``, on tiny shapes: unfold bit for bit, fold with
``assert_close``, gradients, d = 1..5, layouts, dtypes, N = 0, unbatched, bad inputs, the ``out=``
workspace of the conv layers. A spy on the launchers makes every test fail if the kernels did
not actually run. ``cuda``-marked tests run the same tables compiled, at real sizes, on a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from tests.test_engine_errors import CASES as ERROR_CASES
from unfoldconv import fold, kernels, unfold, unfold_transpose
from unfoldconv._args import make_geometry
from unfoldconv._backend import conv_route
from unfoldconv._engine import gather, scatter
from unfoldconv.layers import Conv2d

pytest.importorskip("triton")

needs_cuda = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    """Triton's interpreter for CPU tensors; CUDA tensors still run the compiled kernels."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("UNFOLDCONV_BACKEND", raising=False)


@pytest.fixture
def launches(monkeypatch):
    """Counts calls of each launcher the engine dispatches to (the kernels really ran)."""
    counts = {"unfold": 0, "fold": 0}
    for name in counts:
        launcher = getattr(kernels, name)

        def counted(*args, _name=name, _launcher=launcher, **kwargs):
            counts[_name] += 1
            return _launcher(*args, **kwargs)

        monkeypatch.setattr(kernels, name, counted)
    return counts


def on(backend: str, op, *args, **kwargs):
    with unfoldconv.backend(backend):
        return op(*args, **kwargs)


# (id, input shape (N, C, *spatial), unfold/fold kwargs): d = 1..5, tiny for the interpreter
CASES = [
    ("1d-k3-s2-p1-d2", (2, 3, 9), {"kernel_size": (3,), "stride": 2, "padding": 1, "dilation": 2}),
    ("2d-k3", (2, 3, 6, 5), {"kernel_size": 3}),
    (
        "2d-asymmetric",
        (2, 3, 7, 6),
        {"kernel_size": (3, 2), "dilation": (2, 1), "padding": (1, 2), "stride": (2, 1)},
    ),
    ("2d-same-even", (1, 2, 5, 6), {"kernel_size": (4, 3), "dilation": (1, 2), "padding": "same"}),
    ("2d-k1", (2, 4, 3, 3), {"kernel_size": 1}),
    ("2d-stride-gt-kernel", (1, 2, 9, 8), {"kernel_size": 2, "stride": 3}),
    ("3d", (1, 2, 5, 4, 6), {"kernel_size": (2, 3, 2), "stride": (2, 1, 2), "padding": (1, 0, 1)}),
    ("4d", (1, 2, 4, 3, 4, 3), {"kernel_size": 2, "padding": 1, "stride": (1, 2, 1, 2)}),
    ("5d", (1, 1, 3, 3, 3, 3, 3), {"kernel_size": 2, "stride": 2, "padding": 1}),
]
CASE_IDS = [case[0] for case in CASES]
CASE_ARGS = [case[1:] for case in CASES]


@pytest.mark.parametrize("shape, kwargs", CASE_ARGS, ids=CASE_IDS)
def test_unfold_matches_torch_route_bit_for_bit(shape, kwargs, launches):
    x = torch.randn(shape)
    result = on("triton", unfold, x, **kwargs)
    assert launches["unfold"] == 1
    assert torch.equal(result, on("torch", unfold, x, **kwargs))
    if len(shape) == 4 and kwargs.get("padding") != "same":  # F.unfold has no "same"
        assert torch.equal(result, F.unfold(x, **kwargs))


@pytest.mark.parametrize("shape, kwargs", CASE_ARGS, ids=CASE_IDS)
def test_fold_matches_torch_route(shape, kwargs, launches):
    columns = on("torch", unfold, torch.randn(shape), **kwargs)
    columns = torch.randn_like(columns)
    output_size = tuple(shape[2:])
    result = on("triton", fold, columns, output_size, **kwargs)
    assert launches["fold"] == 1
    expected = on("torch", fold, columns, output_size, **kwargs)
    # the same fixed order of float32 sums as the torch route: equal, not only close
    assert torch.equal(result, expected)
    if len(shape) == 4 and kwargs.get("padding") != "same":
        torch.testing.assert_close(result, F.fold(columns, output_size, **kwargs))


@pytest.mark.parametrize("shape, kwargs", CASE_ARGS, ids=CASE_IDS)
def test_adjoint_identity(shape, kwargs):
    """<unfold(x), y> == <x, fold(y)> with both kernels, in float64."""
    x = torch.randn(shape, dtype=torch.float64)
    columns = on("triton", unfold, x, **kwargs)
    y = torch.randn_like(columns)
    folded = on("triton", fold, y, tuple(shape[2:]), **kwargs)
    torch.testing.assert_close((columns * y).sum(), (x * folded).sum())


# (id, input shape, kwargs) for unfold_transpose: stride (input dilation), crops, output_padding
TRANSPOSE_CASES = [
    ("1d-s2", (2, 3, 4), {"kernel_size": (3,), "stride": 2, "padding": 1, "output_padding": 1}),
    (
        "2d-all",
        (2, 2, 4, 3),
        {
            "kernel_size": (3, 2),
            "stride": (2, 3),
            "padding": (1, 2),
            "output_padding": (1, 0),
            "dilation": (2, 1),
        },
    ),
    ("2d-crop", (1, 2, 5, 5), {"kernel_size": 2, "padding": 1}),
    ("3d-s2", (1, 2, 3, 2, 3), {"kernel_size": 2, "stride": 2, "padding": (0, 1, 0)}),
]


@pytest.mark.parametrize(
    "shape, kwargs", [c[1:] for c in TRANSPOSE_CASES], ids=[c[0] for c in TRANSPOSE_CASES]
)
def test_unfold_transpose_public_op(shape, kwargs, launches):
    x = torch.randn(shape)
    result = on("triton", unfold_transpose, x, **kwargs)
    assert launches["unfold"] == 1
    assert torch.equal(result, on("torch", unfold_transpose, x, **kwargs))


def _transpose_tuples(shape, kwargs):
    d = len(shape) - 2
    names = ("kernel_size", "stride", "padding", "output_padding", "dilation")
    defaults = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1}
    values = {**defaults, **kwargs}
    return [tuple(values[n]) if isinstance(values[n], tuple) else (values[n],) * d for n in names]


@pytest.mark.parametrize(
    "shape, kwargs", [c[1:] for c in TRANSPOSE_CASES], ids=[c[0] for c in TRANSPOSE_CASES]
)
def test_unfold_transpose_kernel_without_dilated_input(shape, kwargs):
    """The launcher reads the stride as an input dilation: same columns, and its adjoint is the
    gradient of the torch route's unfold_transpose."""
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    tuples = _transpose_tuples(shape, kwargs)
    expected = on("torch", unfold_transpose, x, **kwargs)
    columns = kernels.unfold_transpose(x.detach(), *tuples)
    assert torch.equal(columns, expected)
    y = torch.randn_like(expected)
    (grad,) = torch.autograd.grad(expected, x, y)
    adjoint = kernels.unfold_transpose_adjoint(y, shape[2:], *tuples)
    torch.testing.assert_close(adjoint, grad)


GRAD_CASES = [CASES[0], CASES[2], CASES[6]]


@pytest.mark.parametrize(
    "shape, kwargs", [c[1:] for c in GRAD_CASES], ids=[c[0] for c in GRAD_CASES]
)
def test_gradcheck_and_gradgradcheck(shape, kwargs, launches):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    columns = torch.randn_like(on("torch", unfold, x.detach(), **kwargs), requires_grad=True)
    output_size = tuple(shape[2:])
    with unfoldconv.backend("triton"):
        # fast_mode: random projections, a few kernel calls instead of one per element
        assert torch.autograd.gradcheck(lambda t: unfold(t, **kwargs), x, fast_mode=True)
        assert torch.autograd.gradgradcheck(lambda t: unfold(t, **kwargs), x, fast_mode=True)
        assert torch.autograd.gradcheck(
            lambda t: fold(t, output_size, **kwargs), columns, fast_mode=True
        )
    assert launches["unfold"] > 0 and launches["fold"] > 0


def test_unfold_transpose_gradients_match_torch_route():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    kwargs = {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}
    weights = torch.randn_like(on("torch", unfold_transpose, x, **kwargs))
    grads = []
    for backend in ("torch", "triton"):
        with unfoldconv.backend(backend):
            (grad,) = torch.autograd.grad((unfold_transpose(x, **kwargs) * weights).sum(), x)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0])


def _layouts():
    """(id, tensor factory): every layout is read in place, strides and all."""
    base = torch.randn(2, 4, 6, 7)
    volume = torch.randn(2, 3, 4, 5, 4)
    return [
        ("channels-last", base.to(memory_format=torch.channels_last)),
        ("channels-last-3d", volume.to(memory_format=torch.channels_last_3d)),
        ("sliced", base[:, 1::2, ::2, 1:]),
        ("expanded", torch.randn(1, 4, 1, 7).expand(3, 4, 5, 7)),
        ("transposed", base.transpose(2, 3)),
        ("offset-view", torch.randn(3 * 4 * 36 + 5)[5:].view(3, 4, 6, 6)),
    ]


@pytest.mark.parametrize("name, x", _layouts(), ids=[case[0] for case in _layouts()])
def test_layouts_read_in_place(name, x, launches):
    kwargs = {"kernel_size": 2, "padding": 1, "stride": (1, 2) if x.dim() == 4 else 1}
    result = on("triton", unfold, x, **kwargs)
    assert torch.equal(result, on("torch", unfold, x, **kwargs))
    assert torch.equal(result, on("torch", unfold, x.contiguous(), **kwargs))
    # fold reads its columns through their strides too
    columns = torch.randn(result.shape[2], result.shape[0], result.shape[1]).permute(1, 2, 0)
    size = tuple(x.shape[2:])
    torch.testing.assert_close(
        on("triton", fold, columns, size, **kwargs), on("torch", fold, columns, size, **kwargs)
    )
    assert launches == {"unfold": 1, "fold": 1}


DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
]


def _random(shape, dtype):
    if dtype == torch.bool:
        return torch.rand(shape) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape).to(dtype)
    return torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(dtype, launches):
    x = _random((2, 3, 5, 4), dtype)
    kwargs = {"kernel_size": (3, 2), "padding": 1, "stride": (1, 2)}
    result = on("triton", unfold, x, **kwargs)
    assert result.dtype == dtype
    assert torch.equal(result, on("torch", unfold, x, **kwargs))
    assert torch.equal(result, F.unfold(x.double(), **kwargs).to(dtype))
    columns = _random(result.shape, dtype)
    geometry = make_geometry(2, (3, 2), 1, 1, (1, 2))
    folded = on("triton", scatter, columns, (5, 4), geometry)  # public fold refuses bool
    assert folded.dtype == dtype
    expected = on("torch", scatter, columns, (5, 4), geometry)
    if dtype in (torch.float16, torch.bfloat16):
        # the kernel sums in float32 and rounds once: within half an ulp of the exact sum (plus
        # float32's own rounding), which the torch route, rounding after every add, is not.
        # One ulp for bfloat16: Triton's interpreter truncates float32 -> bfloat16 (the GPU
        # rounds to nearest; the CUDA test below checks that).
        exact = on("torch", scatter, columns.double(), (5, 4), geometry)
        ulps = 0.5 if dtype == torch.float16 else 1.0
        rtol = ulps * torch.finfo(dtype).eps
        torch.testing.assert_close(folded.double(), exact, rtol=rtol, atol=1e-6)
    else:
        assert torch.equal(folded, expected)
    if dtype == torch.bool:  # a logical or, as F.fold
        assert torch.equal(folded, F.fold(columns, (5, 4), (3, 2), padding=1, stride=(1, 2)))
    assert launches == {"unfold": 1, "fold": 1}


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=str)
def test_unsupported_dtypes_take_the_torch_route(dtype, launches):
    assert not kernels.supports(dtype)
    x = torch.randn(2, 3, 5, 5, dtype=dtype)
    result = on("triton", unfold, x, 3, padding=1)
    assert torch.equal(result, F.unfold(x, 3, padding=1))
    torch.testing.assert_close(
        on("triton", fold, result, (5, 5), 3, padding=1), F.fold(result, (5, 5), 3, padding=1)
    )
    assert launches == {"unfold": 0, "fold": 0}


def test_empty_batch_and_zero_channels(launches):
    for shape in [(0, 3, 5, 5), (2, 0, 5, 5)]:  # F.unfold refuses C = 0; the torch route not
        x = torch.randn(shape)
        result = on("triton", unfold, x, 3, padding=1)
        assert torch.equal(result, on("torch", unfold, x, 3, padding=1))
        folded = on("triton", fold, result, (5, 5), 3, padding=1)
        assert torch.equal(folded, on("torch", fold, result, (5, 5), 3, padding=1))
        assert result.shape[:2] == (shape[0], shape[1] * 9) and folded.shape == shape
    assert launches == {"unfold": 2, "fold": 2}


def test_unbatched(launches):
    x = torch.randn(3, 6, 5)
    result = on("triton", unfold, x, (3, 2), padding=1)
    assert torch.equal(result, F.unfold(x, (3, 2), padding=1))
    torch.testing.assert_close(
        on("triton", fold, result, (6, 5), (3, 2), padding=1),
        F.fold(result, (6, 5), (3, 2), padding=1),
    )
    assert launches == {"unfold": 1, "fold": 1}


@pytest.mark.parametrize(
    "call, error, match", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_bad_inputs_raise_the_same_errors(call, error, match):
    with unfoldconv.backend("triton"), pytest.raises(error, match=match):
        call()


def test_out_workspace():
    x = torch.randn(2, 3, 5, 6)
    geometry = make_geometry(2, 3, 1, 1, (2, 1))
    expected = on("torch", gather, x, geometry)
    workspace = torch.full((expected.numel() + 7,), float("nan"))[7:]
    result = on("triton", gather, x, geometry, out=workspace)
    assert result.data_ptr() == workspace.data_ptr()
    assert torch.equal(result, expected)
    with pytest.raises(
        ValueError,
        match=r"out must be a contiguous torch.float32 tensor of 972 elements, got .*\(271,\)",
    ):
        on("triton", gather, x, geometry, out=torch.empty(271))


@pytest.mark.parametrize("workspace_bytes", [None, 600], ids=["whole-batch", "chunked"])
def test_conv_forward_and_backward_use_the_kernels(workspace_bytes, launches):
    """On the unfold conv route, unfoldconv.conv and layers.Conv2d gather into the ``out=``
    workspace and fold back (the implicit-GEMM route: tests/test_kernels_conv.py)."""
    x = torch.randn(3, 4, 6, 5, requires_grad=True)
    weight = torch.randn(6, 2, 3, 3, requires_grad=True)
    layer = Conv2d(4, 6, 3, stride=(2, 1), padding=1, groups=2)
    layer.workspace_bytes = workspace_bytes
    inputs = [x, weight, *layer.parameters()]
    results = {}
    for backend in ("torch", "triton"):
        with unfoldconv.backend(backend), conv_route("unfold"):
            y = unfoldconv.conv(x, weight, padding=1, groups=2, workspace_bytes=workspace_bytes)
            z = layer(x)
            grads = torch.autograd.grad(y.square().sum() + z.square().sum(), inputs)
        results[backend] = (y, z, *grads)
    for got, expected in zip(results["triton"], results["torch"]):
        torch.testing.assert_close(got, expected)
    assert launches["unfold"] > 0 and launches["fold"] > 0


def test_fold_is_deterministic():
    columns = torch.randn(2, 3 * 9, 16)
    first = on("triton", fold, columns, (6, 6), 3)
    assert all(torch.equal(on("triton", fold, columns, (6, 6), 3), first) for _ in range(3))


def test_kernels_do_not_depend_on_triton_interpret_at_import():
    """The interpreted and compiled forms are chosen per call from the tensors' device."""
    from triton.runtime.interpreter import InterpretedFunction

    from unfoldconv.kernels import _launch, _unfold

    runnable = _launch.kernel_for(_unfold._unfold_kernel, torch.device("cpu"))
    assert isinstance(runnable, InterpretedFunction)
    assert runnable.fn is _unfold._unfold_kernel.fn


# ---- CUDA: the same tables, compiled, at real sizes -------------------------------------------

# (id, input shape, kwargs): All-CNN-C-like and 3-d shapes
CUDA_CASES = [
    ("allcnnc-conv2", (32, 96, 32, 32), {"kernel_size": 3, "padding": 1}),
    ("allcnnc-conv3", (32, 96, 32, 32), {"kernel_size": 3, "padding": 1, "stride": 2}),
    ("allcnnc-conv7", (32, 192, 6, 6), {"kernel_size": 3}),
    ("3d", (4, 16, 16, 16, 16), {"kernel_size": 3, "padding": 1, "dilation": (1, 2, 1)}),
    ("1d", (8, 32, 1000), {"kernel_size": (5,), "stride": 3, "padding": 2}),
    ("5d", (2, 2, 6, 5, 6, 5, 6), {"kernel_size": 2, "padding": 1, "stride": 2}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32], ids=str)
@pytest.mark.parametrize(
    "shape, kwargs", [c[1:] for c in CUDA_CASES], ids=[c[0] for c in CUDA_CASES]
)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_torch_route(shape, kwargs, dtype, launches):
    x = _random(shape, dtype).cuda()
    result = on("triton", unfold, x, **kwargs)
    assert torch.equal(result, on("torch", unfold, x, **kwargs))
    other_strides = x.transpose(1, -1).contiguous().transpose(1, -1)  # channels-last-like
    assert torch.equal(on("triton", unfold, other_strides, **kwargs), result)
    columns = _random(result.shape, dtype).cuda()
    output_size = tuple(shape[2:])
    folded = on("auto", fold, columns, output_size, **kwargs)  # auto: Triton on CUDA
    if dtype.is_floating_point:
        exact = on("torch", fold, columns.double(), output_size, **kwargs)
        torch.testing.assert_close(folded, exact.to(dtype))
    else:
        assert torch.equal(folded, on("torch", fold, columns, output_size, **kwargs))
    assert launches == {"unfold": 2, "fold": 1}


@pytest.mark.parametrize(
    "shape, kwargs", [c[1:] for c in CUDA_CASES], ids=[c[0] for c in CUDA_CASES]
)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fold_bit_identical_across_20_runs(shape, kwargs):
    x = torch.randn(shape, device="cuda")
    columns = torch.randn_like(on("torch", unfold, x, **kwargs))
    first = on("triton", fold, columns, tuple(shape[2:]), **kwargs)
    for _ in range(19):
        assert torch.equal(on("triton", fold, columns, tuple(shape[2:]), **kwargs), first)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_int64_offsets():
    """More than 2**31 column elements: int64 index arithmetic (about 9 GiB of GPU memory)."""
    x = torch.randn(1, 1, 2**15 + 2, 2**14 + 2, device="cuda", dtype=torch.float16)
    geometry = make_geometry(2, 3, 1, 0, 1)
    columns = on("triton", gather, x, geometry)
    assert columns.numel() > 2**31
    for row in (0, 4, 8):
        offset = divmod(row, 3)
        window = x[0, 0, offset[0] : offset[0] + 2**15, offset[1] : offset[1] + 2**14]
        assert torch.equal(columns[0, row], window.reshape(-1))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fold_int64_offsets():
    """Fold of more than 2**31 column elements (uint8, about 2.4 GiB of columns and 3 GiB of
    temporaries): the int64 index arithmetic of the fold kernel against the torch route, with
    position-dependent values so a wrapped offset shows."""
    from unfoldconv.kernels import _launch

    size = (2**14, 2**14)
    length = size[0] * size[1]
    base = (torch.arange(length, device="cuda") % 251).to(torch.uint8)
    columns = torch.stack([base + 31 * row for row in range(9)]).unsqueeze(0)  # (1, 9, L)
    del base
    assert columns.numel() > 2**31 and _launch.needs_int64(columns)
    geometry = make_geometry(2, 3, 1, 1, 1)
    folded = on("triton", scatter, columns, size, geometry)
    assert torch.equal(folded, on("torch", scatter, columns, size, geometry))
    # the last element, past offset 2**31 of the columns' rows 4-8: the four windows at
    # (H-1 or H-2, W-1 or W-2) read it through kernel offsets (1 or 2, 1 or 2)
    height, width = size
    reads = [(4, height - 1, width - 1), (5, height - 1, width - 2)]
    reads += [(7, height - 2, width - 1), (8, height - 2, width - 2)]
    expected = sum((y * width + x) % 251 + 31 * row for row, y, x in reads) % 256
    assert folded[0, 0, -1, -1].item() == expected


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("route", ["unfold", "implicit_gemm"])
def test_cuda_conv_layer_matches_torch_route(route, monkeypatch):
    from unfoldconv.kernels import _conv

    monkeypatch.setattr(_conv, "cudnn_allow_tf32", lambda: False)  # both routes IEEE float32
    layer = Conv2d(96, 96, 3, padding=1).cuda()
    x = torch.randn(32, 96, 32, 32, device="cuda", requires_grad=True)
    outputs = {}
    for backend in ("torch", "triton"):
        with unfoldconv.backend(backend), conv_route(route):
            y = layer(x)
            outputs[backend] = (y, *torch.autograd.grad(y.square().sum(), [x, layer.weight]))
    for got, expected in zip(outputs["triton"], outputs["torch"]):
        # float32 sums in other orders (the weight gradient sums 32768 products per entry):
        # within 1e-5 of each result's largest entry, rather than float32's per-entry default
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * scale)


def test_needs_int64_threshold():
    from unfoldconv.kernels import _launch

    assert not _launch.needs_int64(torch.empty(4, 4))
    # 2**30 elements, but strided so that the last one sits past offset 2**31
    strided = torch.empty_strided((2**15, 2**15), (2**16 + 4, 1), device="meta")
    assert _launch.needs_int64(strided)
    assert _launch.needs_int64(torch.empty(2**31, device="meta"))
    assert not _launch.needs_int64(torch.empty(2**31 - 2, device="meta"))


# ---- compiled for an H100 without one: what the interpreter cannot check ---------------------


def _compile_for_sm90(kernel, args, options):
    """What ``kernel[grid](*args, **options)`` would compile on an sm_90 GPU (H100): Triton's own
    argument specialisation, then the full pipeline down to a cubin (ptxas ships with Triton)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    target = GPUTarget("cuda", 90, 32)
    jit = JITFunction(kernel.fn)
    backend = make_backend(target)
    binder = create_function_from_signature(jit.signature, jit.params, backend)
    bound, specialization, parsed = binder(*args, **options)
    parsed, signature, constexprs, attrs = jit._pack_args(
        backend, options, bound, specialization, parsed
    )
    source = ASTSource(jit, signature, constexprs, attrs)
    return triton.compile(source, target=target, options=parsed.__dict__)


def _recorded_launches(monkeypatch, calls):
    """``(kernel, args, options)`` of each planned launch of ``calls``; nothing runs."""
    from unfoldconv.kernels import _launch

    recorded = []

    def record(launcher, *tensors):
        recorded.append((launcher.kernel, (*tensors, *launcher.tail), launcher.options))

    monkeypatch.setattr(_launch.Launcher, "__call__", record)
    for call in calls:
        call()
    return recorded


def test_kernels_compile_for_h100(monkeypatch):
    """Each kernel form the tests run also compiles for sm_90; stores along the contiguous axis
    are vectorised (coalesced 16-byte stores) for an aligned float32 output."""
    pytest.importorskip("triton.backends.nvidia")
    geometry = make_geometry(2, 3, 1, 1, 1)
    x, columns = torch.randn(32, 96, 32, 32), torch.randn(32, 96 * 9, 1024)
    calls = [
        lambda: kernels.unfold(x, geometry),
        lambda: kernels.fold(columns.to(torch.bfloat16), (32, 32), geometry),
        lambda: kernels.fold(
            torch.ones(1, 8, 27, dtype=torch.bool), (4, 4, 4), make_geometry(3, 2, 1, 0, 1)
        ),
        lambda: kernels.unfold_transpose(
            torch.randn(2, 3, 4, 5, 3), (3, 2, 2), (2, 1, 3), (1, 0, 2), (1, 0, 0), (1, 2, 1)
        ),
        lambda: kernels.unfold_transpose_adjoint(
            torch.randn(1, 4, 63), (4, 5), (2, 2), (2, 2), (0, 1), (1, 0), (1, 1)
        ),
        lambda: kernels.unfold(torch.randn(2, 3, 9), make_geometry(1, 3, 2, 1, 2)),
    ]
    recorded = _recorded_launches(monkeypatch, calls)
    assert len(recorded) == len(calls)
    for index, (kernel, args, options) in enumerate(recorded):
        compiled = _compile_for_sm90(kernel, args, options)
        assert "cubin" in compiled.asm
        if index in (0, 1):
            assert "st.global.v4" in compiled.asm["ptx"] or "st.global.v2" in compiled.asm["ptx"]

"""The implicit-GEMM convolution kernels against torch's convolutions and the torch route.

Default suite (CPU): the kernels run through Triton's interpreter (``TRITON_INTERPRET=1``) with
the backend forced to ``"triton"``, on tiny shapes: values and input / weight / bias gradients
of ``unfoldconv.conv`` and ``unfoldconv.conv_transpose`` against ``F.conv*d`` /
``F.conv_transpose*d`` (d = 1..3) and against the torch route (d = 4), stride, dilation,
padding, groups, bias, dtypes, N = 0, layouts, gradients of second order, the weight
gradient's fixed order. A spy on the entry points makes a test fail if the kernels did not
run. The compile test builds every kernel form for sm_90 without a GPU; ``cuda``-marked tests
run compiled, at All-CNN-C sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from unfoldconv import kernels
from unfoldconv._args import make_geometry
from unfoldconv._backend import conv_route
from unfoldconv.layers import Conv2d, ConvTranspose2d

pytest.importorskip("triton")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    """Triton's interpreter for CPU tensors, the Triton backend forced."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("UNFOLDCONV_BACKEND", raising=False)
    monkeypatch.delenv("UNFOLDCONV_CONV_ROUTE", raising=False)


@pytest.fixture
def launches(monkeypatch):
    """Counts the window and weight-gradient kernel launches."""
    from unfoldconv.kernels import _conv

    counts = {"window": 0, "weight_grad": 0}
    run = _conv.run

    def counted(kernel, *args, **kwargs):
        counts["weight_grad" if kernel is _conv._weight_grad_kernel else "window"] += 1
        return run(kernel, *args, **kwargs)

    monkeypatch.setattr(_conv, "run", counted)
    return counts


TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

# (id, input shape, C_out, kernel_size, conv kwargs, bias): tiny for the interpreter; the
# interpreter's tile is 64 positions x 16 channels, so some cases span several of each
CASES = [
    (
        "1d-s2-p2-d2-g2",
        (2, 4, 11),
        6,
        (3,),
        {"stride": 2, "padding": 2, "dilation": 2, "groups": 2},
        True,
    ),
    ("2d-k3-p1", (2, 5, 6, 7), 4, (3, 3), {"padding": 1}, True),
    (
        "2d-asymmetric",
        (2, 3, 9, 8),
        5,
        (3, 2),
        {"stride": (2, 3), "padding": (1, 0), "dilation": (1, 2)},
        False,
    ),
    ("2d-stride-gt-kernel", (1, 2, 9, 8), 3, (2, 2), {"stride": 3}, True),
    # 17 channels per group: two reduction steps and two output-channel tiles
    ("2d-wide-channels-g2", (1, 34, 3, 3), 34, (2, 2), {"padding": 1, "groups": 2}, True),
    ("2d-many-positions", (3, 2, 8, 9), 3, (3, 1), {"padding": 1, "stride": (1, 2)}, False),
    ("2d-pad-beyond-kernel", (1, 2, 4, 4), 2, (2, 2), {"padding": 2}, True),
    ("2d-same-even", (2, 3, 5, 6), 4, (4, 3), {"padding": "same", "dilation": (1, 2)}, True),
    (
        "3d",
        (1, 3, 5, 4, 6),
        4,
        (2, 3, 2),
        {"stride": (2, 1, 2), "padding": (1, 0, 1), "groups": 1},
        True,
    ),
]
CASE_IDS = [case[0] for case in CASES]


def _conv_inputs(shape, c_out, kernel_size, kwargs, bias, dtype=torch.float64):
    groups = kwargs.get("groups", 1)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    weight = torch.randn(c_out, shape[1] // groups, *kernel_size, dtype=dtype, requires_grad=True)
    b = torch.randn(c_out, dtype=dtype, requires_grad=True) if bias else None
    return x, weight, b


def _values_and_grads(op, tensors, seed=0, round_to=None):
    """``op(*tensors)`` and the gradients of ``<op(...), g>`` for a fixed random ``g`` (the
    same for every dtype; ``round_to``: rounded to that dtype first)."""
    output = op(*tensors)
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(output.shape, dtype=torch.float64, generator=generator)
    weights = weights.to(round_to or output.dtype).to(output.dtype)
    needed = [t for t in tensors if t is not None]
    return (output, *torch.autograd.grad(output, needed, weights))


def _assert_all_close(got, expected):
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, msg=lambda m, i=index: f"tensor {i}: {m}")


@pytest.mark.parametrize(
    "shape, c_out, kernel_size, kwargs, bias", [c[1:] for c in CASES], ids=CASE_IDS
)
def test_conv_matches_torch(shape, c_out, kernel_size, kwargs, bias, launches):
    d = len(kernel_size)
    tensors = _conv_inputs(shape, c_out, kernel_size, kwargs, bias)
    with unfoldconv.backend("triton"):
        got = _values_and_grads(lambda *t: unfoldconv.conv(*t, **kwargs), tensors)
    expected = _values_and_grads(lambda *t: TORCH_CONV[d](*t, **kwargs), tensors)
    _assert_all_close(got, expected)
    assert launches == {"window": 2, "weight_grad": 1}  # forward, input gradient; weight gradient


def test_conv_4d_matches_torch_route(launches):
    kwargs = {
        "stride": (1, 2, 1, 2),
        "padding": (1, 0, 1, 1),
        "dilation": (1, 1, 2, 1),
        "groups": 2,
    }
    tensors = _conv_inputs((1, 4, 3, 4, 3, 4), 6, (2, 1, 2, 1), kwargs, True)
    with unfoldconv.backend("triton"):
        got = _values_and_grads(lambda *t: unfoldconv.conv(*t, **kwargs), tensors)
    with unfoldconv.backend("torch"):
        expected = _values_and_grads(lambda *t: unfoldconv.conv(*t, **kwargs), tensors)
    _assert_all_close(got, expected)
    assert launches == {"window": 2, "weight_grad": 1}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_dtypes_accumulate_in_float32(dtype, launches):
    """Every value and gradient rounds once from a float32 (or exact) sum: close to the float64
    result rounded to ``dtype`` within ``dtype``'s default tolerance."""
    kwargs = {"padding": 1, "stride": (2, 1), "groups": 2}
    tensors = _conv_inputs((2, 4, 5, 4), 6, (3, 2), kwargs, True, dtype=dtype)
    with unfoldconv.backend("triton"):
        got = _values_and_grads(lambda *t: unfoldconv.conv(*t, **kwargs), tensors)
    exact = [t.detach().double().requires_grad_() for t in tensors]
    expected = _values_and_grads(lambda *t: F.conv2d(*t, **kwargs), exact, round_to=dtype)
    assert all(t.dtype == dtype for t in got)
    _assert_all_close(got, [t.to(dtype) for t in expected])
    assert launches == {"window": 2, "weight_grad": 1}


def _layouts():
    """(id, input factory): read in place through their strides."""
    return [
        ("channels-last", lambda: torch.randn(2, 4, 5, 6).to(memory_format=torch.channels_last)),
        ("sliced-transposed", lambda: torch.randn(1, 8, 12, 9)[:, 1::2, ::2, 1:].transpose(2, 3)),
    ]


@pytest.mark.parametrize("name, make", _layouts(), ids=[c[0] for c in _layouts()])
def test_layouts(name, make, launches):
    x = make().double().requires_grad_()
    weight = torch.randn(5, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    with unfoldconv.backend("triton"):
        got = _values_and_grads(lambda *t: unfoldconv.conv(*t, padding=1), (x, weight))
    expected = _values_and_grads(lambda *t: F.conv2d(*t, padding=1), (x, weight))
    _assert_all_close(got, expected)
    if name == "channels-last":  # as torch's convs: channels_last in, channels_last out
        assert got[0].is_contiguous(memory_format=torch.channels_last)
        assert got[1].is_contiguous(memory_format=torch.channels_last)
    assert launches["window"] == 2


def test_inference_runs_the_forward_kernel_alone(launches):
    x, weight, _ = (t.detach() for t in _conv_inputs((2, 3, 5, 4), 4, (3, 3), {}, True))
    bias = torch.randn(8, dtype=torch.float64)[::2]  # strided: read through a contiguous copy
    with unfoldconv.backend("triton"), torch.no_grad():
        y = unfoldconv.conv(x, weight, bias, stride=(1, 2), padding=1)
    assert y.grad_fn is None
    torch.testing.assert_close(y, F.conv2d(x, weight, bias, stride=(1, 2), padding=1))
    assert launches == {"window": 1, "weight_grad": 0}


def test_empty_batch(launches):
    x = torch.randn(0, 3, 5, 5, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    bias = torch.randn(4, requires_grad=True)
    with unfoldconv.backend("triton"):
        y = unfoldconv.conv(x, weight, bias, padding=1)
        grads = torch.autograd.grad(y.sum(), (x, weight, bias))
    assert y.shape == (0, 4, 5, 5)
    assert grads[0].shape == x.shape
    assert torch.equal(grads[1], torch.zeros_like(weight))
    assert torch.equal(grads[2], torch.zeros_like(bias))


@pytest.mark.parametrize("order", [1, pytest.param(2, marks=pytest.mark.slow)], ids=str)
def test_gradcheck_and_gradgradcheck(order, launches):
    """Every order: each of the three functions differentiates through the other two."""
    kwargs = {"stride": 2, "padding": 1, "groups": 2}
    tensors = _conv_inputs((1, 4, 5), 4, (2,), kwargs, True)
    check = torch.autograd.gradcheck if order == 1 else torch.autograd.gradgradcheck
    with unfoldconv.backend("triton"):
        # fast_mode: random projections, a few kernel calls instead of one per element
        assert check(lambda *t: unfoldconv.conv(*t, **kwargs), tensors, fast_mode=True)
    assert launches["weight_grad"] > 0


def test_weight_gradient_split_is_fixed_and_bit_identical(monkeypatch, launches):
    """The N * L reduction split over many programs: the same bits on every run, and the same
    gradient (to rounding) as one program summing everything."""
    from unfoldconv.kernels import _conv, _conv_function

    x = torch.randn(3, 4, 9, 10)
    grad = torch.randn(3, 5, 9, 10)
    geometry = make_geometry(2, (3, 1), 1, (1, 0), 1)
    shape = (5, 4, 3, 1)
    whole = _conv_function.conv_weight_grad(x, grad, shape, geometry, 1)
    # 270 rows in 64-row steps: 5 splits (each launch: 5 splits x 3 kernel offsets)
    monkeypatch.setattr(_conv, "INTERPRETER_WEIGHT_GRAD_PROGRAMS", 15)
    split = _conv_function.conv_weight_grad(x, grad, shape, geometry, 1)
    assert torch.equal(_conv_function.conv_weight_grad(x, grad, shape, geometry, 1), split)
    torch.testing.assert_close(split, whole)
    reference = torch.nn.grad.conv2d_weight(x, shape, grad, padding=(1, 0))
    torch.testing.assert_close(split, reference)
    assert launches["weight_grad"] == 3


# (id, input shape, C_out / groups, kernel_size, conv_transpose kwargs, bias)
TRANSPOSE_CASES = [
    ("1d-s2-op1", (2, 4, 5), 3, (3,), {"stride": 2, "padding": 1, "output_padding": 1}, True),
    (
        "2d-all",
        (2, 4, 4, 3),
        3,
        (3, 2),
        {
            "stride": (2, 3),
            "padding": (1, 0),
            "output_padding": (1, 2),
            "dilation": (1, 2),
            "groups": 2,
        },
        True,
    ),
    (
        "2d-output-padding-ge-stride",
        (1, 2, 4, 4),
        3,
        (3, 3),
        {"dilation": 2, "output_padding": 1},
        False,
    ),
    ("3d-s2", (1, 3, 3, 2, 3), 2, (2, 2, 1), {"stride": 2, "padding": (0, 1, 0)}, True),
]


@pytest.mark.parametrize(
    "shape, c_out_group, kernel_size, kwargs, bias",
    [c[1:] for c in TRANSPOSE_CASES],
    ids=[c[0] for c in TRANSPOSE_CASES],
)
def test_conv_transpose_matches_torch(shape, c_out_group, kernel_size, kwargs, bias, launches):
    d = len(kernel_size)
    groups = kwargs.get("groups", 1)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(
        shape[1], c_out_group, *kernel_size, dtype=torch.float64, requires_grad=True
    )
    b = torch.randn(c_out_group * groups, dtype=torch.float64, requires_grad=True) if bias else None
    with unfoldconv.backend("triton"):
        got = _values_and_grads(lambda *t: unfoldconv.conv_transpose(*t, **kwargs), (x, weight, b))
    expected = _values_and_grads(lambda *t: TORCH_CONV_TRANSPOSE[d](*t, **kwargs), (x, weight, b))
    _assert_all_close(got, expected)
    assert launches == {"window": 2, "weight_grad": 1}


def test_layers_take_the_implicit_gemm_route(launches):
    conv = Conv2d(4, 6, 3, stride=2, padding=1, groups=2, padding_mode="reflect").double()
    transpose = ConvTranspose2d(6, 4, 2, stride=2, padding=1, output_padding=1).double()
    native = [conv.to_native(), transpose.to_native()]
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    with unfoldconv.backend("triton"):  # the parameters' gradients flow from the layers
        got = _values_and_grads(
            lambda t, *_: transpose(conv(t)), (x, *conv.parameters(), *transpose.parameters())
        )
    expected = _values_and_grads(
        lambda t, *_: native[1](native[0](t)),
        (x, *native[0].parameters(), *native[1].parameters()),
    )
    _assert_all_close(got, expected)
    # two forwards, two input gradients, two weight gradients
    assert launches == {"window": 4, "weight_grad": 2}


def test_conv_route_switch(monkeypatch, launches):
    from unfoldconv.kernels import _unfold

    unfold_launches = []
    unfold = _unfold.unfold

    def counted(*args, **kwargs):
        unfold_launches.append(1)
        return unfold(*args, **kwargs)

    monkeypatch.setattr(_unfold, "unfold", counted)
    x, weight = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    geometry = make_geometry(2, 3, 1, 1, 1)
    with unfoldconv.backend("triton"):
        assert kernels.conv_wanted(x, weight, geometry)
        with conv_route("unfold"):
            assert not kernels.conv_wanted(x, weight, geometry)
            unfoldconv.conv(x, weight, padding=1)
        monkeypatch.setenv("UNFOLDCONV_CONV_ROUTE", "unfold")
        assert not kernels.conv_wanted(x, weight, geometry)
        with conv_route("implicit_gemm"):  # the innermost block wins over the environment
            assert kernels.conv_wanted(x, weight, geometry)
        # windows that tile the input stay a rearrange + GEMM; dtypes without a kernel
        assert not kernels.conv_wanted(x, weight, make_geometry(2, 2, 1, 0, 2))
        assert not kernels.conv_wanted(x.to(torch.complex64), weight, geometry)
    assert not kernels.conv_wanted(x, weight, geometry)  # "auto" on the CPU: the torch route
    assert launches == {"window": 0, "weight_grad": 0}
    assert unfold_launches  # the unfold route really ran


def test_bad_conv_route_names():
    with (
        pytest.raises(
            ValueError,
            match=r"name must be one of \('auto', 'implicit_gemm', 'unfold'\), got name='fast'",
        ),
        conv_route("fast"),
    ):
        pass


def test_bad_conv_route_environment_variable(monkeypatch):
    monkeypatch.setenv("UNFOLDCONV_CONV_ROUTE", "gemm")
    x, weight = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with (
        unfoldconv.backend("triton"),
        pytest.raises(ValueError, match="UNFOLDCONV_CONV_ROUTE='gemm'"),
    ):
        unfoldconv.conv(x, weight)


def test_precision_policy(monkeypatch):
    from unfoldconv.kernels import _conv
    from unfoldconv.kernels._conv import input_precision

    cuda = torch.device("cuda")
    monkeypatch.setattr(_conv, "cudnn_allow_tf32", lambda: True)
    assert input_precision(torch.float32, cuda) == "tf32"
    assert input_precision(torch.float32, torch.device("cpu")) == "ieee"  # the interpreter
    assert input_precision(torch.bfloat16, cuda) == "tf32"  # tl.dot's native 16-bit MMA
    assert input_precision(torch.float64, cuda) == "ieee"
    monkeypatch.setattr(_conv, "cudnn_allow_tf32", lambda: False)
    assert input_precision(torch.float32, cuda) == "ieee"
    assert not kernels.conv_tf32(torch.randn(2))


def test_autotune_prunes_tiles_wider_than_the_channels():
    from unfoldconv.kernels._conv import WINDOW_CONFIGS, _prune_window_configs

    def kept(c_out, c_red=96, dtype=torch.float32):
        named = {"source_ptr": torch.empty(1, dtype=dtype), "c_out": c_out, "c_red": c_red}
        return _prune_window_configs(WINDOW_CONFIGS, named)

    assert {config.kwargs["BLOCK_N"] for config in kept(10)} == {32}
    assert kept(192) == WINDOW_CONFIGS
    assert kept(192, dtype=torch.float64) == WINDOW_CONFIGS[-1:]
    assert kept(96, c_red=3) == WINDOW_CONFIGS[-1:]  # 16 channels a step for RGB input


def test_weight_gradient_tile_follows_the_channels():
    from unfoldconv.kernels._conv import _weight_grad_tile

    assert _weight_grad_tile(96, 96) == {"BLOCK_R": 64, "BLOCK_N": 64, "BLOCK_M": 64}
    assert _weight_grad_tile(3, 20) == {"BLOCK_R": 16, "BLOCK_N": 32, "BLOCK_M": 64}


# ---- compiled for an H100 without one ----------------------------------------------------------


def _recorded_conv_launches(monkeypatch, dtypes):
    """The (kernel, args, constants, fixed tile) of a stride-2 3x3 conv's forward, input
    gradient (4 phases) and weight gradient per dtype, at All-CNN-C conv3's size."""
    from unfoldconv.kernels import _conv, _conv_function

    recorded = []

    def record(kernel, grid, device, args, constants, tile):
        recorded.append((kernel, args, constants, tile))

    monkeypatch.setattr(_conv, "run", record)
    geometry = make_geometry(2, 3, 1, 1, 2)
    for dtype in dtypes:
        x, weight = torch.randn(32, 96, 32, 32, dtype=dtype), torch.randn(96, 96, 3, 3, dtype=dtype)
        grad = torch.randn(32, 96, 16, 16, dtype=dtype)
        _conv_function.conv_forward(x, weight, weight[:, 0, 0, 0], geometry, 1)
        _conv_function.conv_input_grad(grad, weight, None, (32, 32), geometry, 1)
        _conv_function.conv_weight_grad(x, grad, weight.shape, geometry, 1)
    assert len(recorded) == 3 * len(dtypes)
    return recorded


def _compile_and_check(kernel, args, constants, options):
    from tests.test_kernels_triton import _compile_for_sm90
    from unfoldconv.kernels import _conv

    compiled = _compile_for_sm90(kernel, args, {**constants, **options, **_conv.OPTIONS})
    assert "cubin" in compiled.asm
    ptx = compiled.asm["ptx"]
    dtype = args[0].dtype
    if dtype in (torch.float16, torch.bfloat16) or constants["PRECISION"] == "tf32":
        assert "wgmma" in ptx  # Hopper's tensor cores
    if dtype == torch.float64:
        assert "mma.sync.aligned.m8n8k4.row.col.f64" in ptx  # DMMA
    if constants["PRECISION"] == "ieee" and dtype == torch.float32:
        assert "fma.rn.f32" in ptx  # IEEE float32 on the FMA pipe


def _tiles(tile):
    """The tiles a launch runs with: the fixed one, else every autotuned config."""
    from unfoldconv.kernels import _conv

    if tile is not None:
        return [tile]
    return [config.all_kwargs() for config in _conv.WINDOW_CONFIGS]


def test_kernels_compile_for_h100(monkeypatch):
    """Each kernel form compiles for sm_90 (one tile each; every tile: the slow test below):
    forward in TF32, the input gradient by phase in bfloat16, the weight gradient in float16,
    the forward in float64; 16-bit and TF32 multiply on wgmma, float64 on DMMA."""
    from unfoldconv.kernels import _conv

    pytest.importorskip("triton.backends.nvidia")
    monkeypatch.setattr(_conv, "cudnn_allow_tf32", lambda: True)
    recorded = _recorded_conv_launches(
        monkeypatch, [torch.float32, torch.bfloat16, torch.float16, torch.float64]
    )
    for index in (0, 4, 8, 9):  # fp32 forward, bf16 input grad, fp16 weight grad, fp64 forward
        kernel, args, constants, tile = recorded[index]
        # the interpreter's ieee: the CUDA policy's tf32 for float32 (TF32 on by default)
        if args[0].dtype == torch.float32:
            constants = {**constants, "PRECISION": "tf32"}
        _compile_and_check(kernel, args, constants, _tiles(tile)[-1])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["tf32", "ieee"])
def test_every_kernel_tile_and_dtype_compiles_for_h100(precision, monkeypatch):
    pytest.importorskip("triton.backends.nvidia")
    from unfoldconv.kernels import _conv

    dtypes = (
        [torch.float32]
        if precision == "ieee"
        else [torch.float16, torch.bfloat16, torch.float32, torch.float64]
    )
    for kernel, args, constants, tile in _recorded_conv_launches(monkeypatch, dtypes):
        if args[0].dtype == torch.float32:
            constants = {**constants, "PRECISION": precision}
        named = {"source_ptr": args[0], "c_out": args[5], "c_red": args[6]}
        tiles = _tiles(tile)
        if tile is None:
            tiles = [
                c.all_kwargs() for c in _conv._prune_window_configs(_conv.WINDOW_CONFIGS, named)
            ]
        for options in tiles:
            _compile_and_check(kernel, args, constants, options)


# ---- CUDA: compiled, at All-CNN-C sizes ------------------------------------------------------

# (id, input shape, C_out, kwargs): All-CNN-C's 3x3 layers, a 3-d and a 1-d one
CUDA_CASES = [
    ("allcnnc-conv2", (32, 96, 32, 32), 96, {"padding": 1}),
    ("allcnnc-conv3", (32, 96, 32, 32), 96, {"padding": 1, "stride": 2}),
    ("allcnnc-conv7", (32, 192, 6, 6), 192, {}),
    ("3d", (4, 16, 12, 12, 12), 32, {"padding": 1, "dilation": (1, 2, 1), "groups": 2}),
    ("1d", (8, 32, 1000), 48, {"stride": 3, "padding": 2}),
]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "shape, c_out, kwargs", [c[1:] for c in CUDA_CASES], ids=[c[0] for c in CUDA_CASES]
)
def test_cuda_conv_matches_cudnn(shape, c_out, kwargs, dtype, monkeypatch, launches):
    """Against cuDNN in float64 (exact reference), both with TF32 off (float32: torch's
    default tolerance) and, for bfloat16, its own."""
    from unfoldconv.kernels import _conv

    monkeypatch.setattr(_conv, "cudnn_allow_tf32", lambda: False)
    d = len(shape) - 2
    groups = kwargs.get("groups", 1)
    x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    kernel = (3,) * d
    weight = (
        torch.randn(c_out, shape[1] // groups, *kernel, device="cuda", dtype=dtype) / 10
    ).requires_grad_()
    bias = torch.randn(c_out, device="cuda", dtype=dtype, requires_grad=True)
    got = _values_and_grads(lambda *t: unfoldconv.conv(*t, **kwargs), (x, weight, bias))
    exact = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    expected = _values_and_grads(lambda *t: TORCH_CONV[d](*t, **kwargs), exact)
    for a, b in zip(got, expected):
        # the sums run over up to N * L = 32768 terms: scale the tolerance by the result's size
        scale = b.abs().max().item()
        torch.testing.assert_close(
            a.double(), b, rtol=0, atol=scale * (1e-5 if dtype == torch.float32 else 2e-2)
        )
    assert launches == {"window": 2, "weight_grad": 1}


@pytest.mark.cuda
@needs_cuda
def test_cuda_weight_gradient_bit_identical_across_20_runs():
    x = torch.randn(64, 96, 32, 32, device="cuda", requires_grad=True)
    weight = torch.randn(96, 96, 3, 3, device="cuda", requires_grad=True)
    grad = torch.randn(64, 96, 32, 32, device="cuda")
    y = unfoldconv.conv(x, weight, padding=1)
    first = torch.autograd.grad(y, [x, weight], grad, retain_graph=True)
    for _ in range(19):
        again = torch.autograd.grad(y, [x, weight], grad, retain_graph=True)
        assert all(torch.equal(a, b) for a, b in zip(again, first))


@pytest.mark.cuda
@needs_cuda
def test_cuda_tf32_policy_follows_cudnn(monkeypatch):
    """The policy the kernels read (torch.backends.cudnn.allow_tf32) on: within TF32's
    rounding of the exact result, and not IEEE's result; off: IEEE float32."""
    from unfoldconv.kernels import _conv

    x = torch.randn(32, 96, 32, 32, device="cuda")
    weight = torch.randn(96, 96, 3, 3, device="cuda") / 30
    exact = F.conv2d(x.double(), weight.double(), padding=1)
    results = {}
    for allow, atol in [(True, 5e-3), (False, 1e-5)]:
        monkeypatch.setattr(_conv, "cudnn_allow_tf32", lambda allow=allow: allow)
        got = results[allow] = unfoldconv.conv(x, weight, padding=1)
        torch.testing.assert_close(
            got.double(), exact, rtol=0, atol=atol * exact.abs().max().item()
        )

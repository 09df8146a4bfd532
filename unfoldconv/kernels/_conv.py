"""Implicit-GEMM convolution for any number ``d`` of spatial dims: two kernels and their launchers.

Neither kernel writes columns to memory: each loads its column tile straight from the input
(through the input's own strides, zero padding as masked loads) and multiplies it on the tensor
cores with ``tl.dot``, accumulating in float32 (float64 for float64).

- :func:`window_conv` (``_window_conv_kernel``): output-stationary. A program owns a
  ``BLOCK_M x BLOCK_N`` tile of (sample, output position) x (output channel) of one group; the
  rows' grid positions are decomposed once, then one flat loop runs over (kernel offset,
  ``BLOCK_K`` source channels), which Triton pipelines (the next tiles load while this one
  multiplies). Bias fused. The same kernel computes

  * the forward convolution (``source_dilation = 1``), and
  * the input gradient / transposed convolution: the output gradient read as if
    ``stride - 1`` zeros stood between its elements (``source_dilation = stride``), the weight
    flipped and transposed, stride 1. The zeros are never touched: the output positions are
    split by *phase* (``position mod stride``, one slice of the grid per phase) and within a
    phase a kernel offset reaches either whole elements of the source or none; the program
    loops only over the offsets that reach (``first + j * stride / gcd(dilation, stride)`` per
    dim: 4/2/2/1 of 9 for kernel 3, stride 2).

- :func:`weight_grad_partials` (``_weight_grad_kernel``): a program owns a ``BLOCK_R x
  BLOCK_N`` tile of (input channel) x (output channel) at one kernel offset of one group, and
  reduces over its
  fixed share of the ``N * L`` (sample, output position) pairs in ``BLOCK_M`` steps; the
  ``SPLIT`` partial sums are added by ``torch.sum`` over a fixed axis. No atomics, a fixed
  split chosen from the shape alone (not autotuned): bit-identical from run to run.

The window geometry (kernel size, dilation, stride, padding) and the grid of output positions
are compile-time constants: a layer compiles once per input size anyway, and the index
arithmetic then divides by constants (multiply-shift, not the integer pipe's division loop).

Precision (:func:`input_precision`): float32 runs on TF32 tensor cores exactly when
``torch.backends.cudnn.allow_tf32`` is true (torch's switch for its own convolutions, True by
default), IEEE float32 otherwise; float16/bfloat16 multiply in their own type and accumulate in
float32; float64 stays float64.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from unfoldconv.kernels import _launch

# ---- the kernels ----------------------------------------------------------------------------


@triton.jit
def _window_conv_kernel(
    source_ptr,  # (N, C_red * groups, *source_size), any strides
    weight_ptr,  # packed (groups, K, C_red, C_out) contiguous, see pack_weight
    bias_ptr,  # (C_out * groups,) or a dummy
    output_ptr,  # (N, C_out * groups, *output_size), any strides
    num_rows,  # N * prod(GRID_SIZE): the GEMM's M
    c_out,  # output channels per group: the GEMM's N
    c_red,  # reduced (source) channels per group; K * c_red is the GEMM's reduction
    source_stride_n,
    source_stride_c,
    output_stride_n,
    output_stride_c,
    source_size,  # d-tuples from here on
    source_strides,
    output_size,
    output_strides,
    GRID_SIZE: tl.constexpr,  # output positions per dim of one phase: ceil(output / step)
    KERNEL_SIZE: tl.constexpr,
    DILATION: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    SOURCE_DILATION: tl.constexpr,  # zeros between source elements; also the phase step
    KERNEL_STEP: tl.constexpr,  # SOURCE_DILATION / gcd(DILATION, SOURCE_DILATION) per dim
    NUM_PHASES: tl.constexpr,  # prod(SOURCE_DILATION)
    GRID_NUMEL: tl.constexpr,
    D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    FLIP_WEIGHT: tl.constexpr,  # read the packed weight's kernel offsets reversed
    INDEX_64: tl.constexpr,
    ACCUMULATOR: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,  # multiply in ACCUMULATOR (see upcast_for_dot); never on a GPU
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    group = tl.program_id(2) // NUM_PHASES
    phase = tl.program_id(2) % NUM_PHASES  # row-major over SOURCE_DILATION
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # (M,) = (sample, grid position)
    out_channels = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (N,) within the group
    reduced = tl.arange(0, BLOCK_K)  # (K,) source channels of one step
    if INDEX_64:  # channel * channel stride can pass 2**31 too
        rows = rows.to(tl.int64)
        group = group.to(tl.int64)
        out_channels = out_channels.to(tl.int64)
        reduced = reduced.to(tl.int64)
    in_range = rows < num_rows
    channel_in_range = out_channels < c_out
    sample = rows // GRID_NUMEL
    source_row = sample * source_stride_n + group * c_red * source_stride_c  # (M,)

    # Once per program, per dim (d-tuples, last dim first): each row's grid position and the
    # source position it starts from; this phase's index, and the kernel offsets that reach
    # whole source elements from it: first, first + KERNEL_STEP, ... (count of them).
    grid_index = ()
    source_start = ()
    phase_index = ()
    first_offset = ()
    num_offsets = ()
    grid_rest = rows % GRID_NUMEL
    phase_rest = phase
    num_reaching = 1
    for i in tl.static_range(D - 1, -1, -1):
        index = grid_rest % GRID_SIZE[i]  # (M,)
        grid_rest = grid_rest // GRID_SIZE[i]
        grid_index = (index,) + grid_index  # noqa: RUF005 (Triton cannot compile *unpacking)
        source_start = (index * STRIDE[i],) + source_start  # noqa: RUF005
        step_phase = phase_rest % SOURCE_DILATION[i]  # scalar
        phase_rest = phase_rest // SOURCE_DILATION[i]
        phase_index = (step_phase,) + phase_index  # noqa: RUF005
        if NUM_PHASES == 1:  # the forward: every offset reaches
            first = 0
            count = KERNEL_SIZE[i]
        else:
            first = KERNEL_STEP[i]  # none reaches unless found below
            for r in tl.static_range(KERNEL_STEP[i] - 1, -1, -1):  # the smallest one wins
                shift = step_phase * STRIDE[i] + r * DILATION[i] - PAD_BEFORE[i]
                first = tl.where(shift % SOURCE_DILATION[i] == 0, r, first)
            count = tl.maximum((KERNEL_SIZE[i] - first + KERNEL_STEP[i] - 1) // KERNEL_STEP[i], 0)
            count = tl.where(first < KERNEL_STEP[i], count, 0)
        first_offset = (first,) + first_offset  # noqa: RUF005
        num_offsets = (count,) + num_offsets  # noqa: RUF005
        num_reaching = num_reaching * count

    # One flat loop over (reaching kernel offset, block of source channels): the loads of the
    # next steps are in flight while this one multiplies (Triton pipelines the loop).
    num_red_blocks = (c_red + BLOCK_K - 1) // BLOCK_K
    accumulator = tl.full((BLOCK_M, BLOCK_N), 0, ACCUMULATOR)
    for step in range(num_reaching * num_red_blocks):
        offset_rank = step // num_red_blocks
        red = (step - offset_rank * num_red_blocks) * BLOCK_K + reduced  # (K,)
        source_offset = source_row
        inside_source = in_range
        kernel_offset = 0  # row-major over KERNEL_SIZE
        kernel_stride = 1
        for i in tl.static_range(D - 1, -1, -1):
            kernel_index = first_offset[i] + (offset_rank % num_offsets[i]) * KERNEL_STEP[i]
            offset_rank = offset_rank // num_offsets[i]
            # output position grid * SOURCE_DILATION + phase meets the virtual (dilated,
            # padded) source position out * STRIDE + kernel * DILATION - PAD: a whole one here
            shift = phase_index[i] * STRIDE[i] + kernel_index * DILATION[i] - PAD_BEFORE[i]
            source_index = source_start[i] + shift // SOURCE_DILATION[i]  # (M,); exact
            inside_source = inside_source & (source_index >= 0) & (source_index < source_size[i])
            source_offset = source_offset + source_index * source_strides[i]
            kernel_offset = kernel_offset + kernel_index * kernel_stride
            kernel_stride = kernel_stride * KERNEL_SIZE[i]
        red_in_range = red < c_red
        columns = tl.load(
            source_ptr + source_offset[:, None] + red[None, :] * source_stride_c,
            mask=inside_source[:, None] & red_in_range[None, :],
            other=0,
        )  # (M, K): the column tile, never written anywhere
        if FLIP_WEIGHT:  # the input gradient's flipped kernel, never built (kernel_stride = K)
            kernel_offset = kernel_stride - 1 - kernel_offset
        weight_row = (group * kernel_stride + kernel_offset) * c_red  # kernel_stride = K now
        kernels = tl.load(
            weight_ptr + (weight_row + red)[:, None] * c_out + out_channels[None, :],
            mask=red_in_range[:, None] & channel_in_range[None, :],
            other=0,
        )  # (K, N)
        if UPCAST:
            columns = columns.to(ACCUMULATOR)
            kernels = kernels.to(ACCUMULATOR)
        accumulator = tl.dot(
            columns, kernels, accumulator, input_precision=PRECISION, out_dtype=ACCUMULATOR
        )

    channels = group * c_out + out_channels  # (N,) in the whole output
    if HAS_BIAS:
        bias = tl.load(bias_ptr + channels, mask=channel_in_range, other=0)  # (N,)
        accumulator += bias.to(ACCUMULATOR)[None, :]
    output_offset = sample * output_stride_n
    inside_output = in_range
    for i in tl.static_range(D):
        out_index = grid_index[i] * SOURCE_DILATION[i] + phase_index[i]
        inside_output = inside_output & (out_index < output_size[i])
        output_offset = output_offset + out_index * output_strides[i]
    tl.store(
        output_ptr + output_offset[:, None] + channels[None, :] * output_stride_c,
        accumulator.to(output_ptr.dtype.element_ty),
        mask=inside_output[:, None] & channel_in_range[None, :],
    )


@triton.jit
def _weight_grad_kernel(
    input_ptr,  # (N, C_in, *input_size), any strides
    grad_ptr,  # (N, C_out, *GRID_SIZE), any strides
    partial_ptr,  # (SPLIT, groups, K, C_in / groups, C_out / groups) float32/64, contiguous
    num_rows,  # N * L
    rows_per_split,  # a multiple of BLOCK_M
    c_in,  # input channels per group (the tile's rows)
    c_out,  # output channels per group (the tile's columns)
    input_stride_n,
    input_stride_c,
    grad_stride_n,
    grad_stride_c,
    input_size,  # d-tuples from here on
    input_strides,
    grad_strides,
    GRID_SIZE: tl.constexpr,
    KERNEL_SIZE: tl.constexpr,
    DILATION: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    GRID_NUMEL: tl.constexpr,
    KERNEL_NUMEL: tl.constexpr,
    D: tl.constexpr,
    INDEX_64: tl.constexpr,
    ACCUMULATOR: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    num_n_blocks = (c_out + BLOCK_N - 1) // BLOCK_N
    in_channels = (tl.program_id(0) // num_n_blocks) * BLOCK_R + tl.arange(0, BLOCK_R)  # (R,)
    out_channels = (tl.program_id(0) % num_n_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)  # (N,)
    group = tl.program_id(1) // KERNEL_NUMEL
    kernel_offset = tl.program_id(1) % KERNEL_NUMEL
    split = tl.program_id(2)
    if INDEX_64:
        group = group.to(tl.int64)
        split = split.to(tl.int64)
        in_channels = in_channels.to(tl.int64)
        out_channels = out_channels.to(tl.int64)
    in_channel_in_range = in_channels < c_in
    out_channel_in_range = out_channels < c_out
    input_channel_offset = (group * c_in + in_channels) * input_stride_c  # (R,)
    grad_channel_offset = (group * c_out + out_channels) * grad_stride_c  # (N,)
    accumulator = tl.full((BLOCK_R, BLOCK_N), 0, ACCUMULATOR)
    split_start = split * rows_per_split
    positions = tl.arange(0, BLOCK_M)
    for step in range(0, rows_per_split, BLOCK_M):  # a fixed order: bit-identical sums
        rows = split_start + step + positions  # (M,) = (sample, output position)
        in_range = rows < num_rows
        sample = rows // GRID_NUMEL
        grid_rest = rows % GRID_NUMEL
        kernel_rest = kernel_offset
        input_offset = sample * input_stride_n
        grad_offset = sample * grad_stride_n
        inside_input = in_range
        for i in tl.static_range(D - 1, -1, -1):
            kernel_index = kernel_rest % KERNEL_SIZE[i]
            kernel_rest = kernel_rest // KERNEL_SIZE[i]
            out_index = grid_rest % GRID_SIZE[i]
            grid_rest = grid_rest // GRID_SIZE[i]
            in_index = out_index * STRIDE[i] + kernel_index * DILATION[i] - PAD_BEFORE[i]
            inside_input = inside_input & (in_index >= 0) & (in_index < input_size[i])
            input_offset = input_offset + in_index * input_strides[i]
            grad_offset = grad_offset + out_index * grad_strides[i]
        columns = tl.load(
            input_ptr + input_channel_offset[:, None] + input_offset[None, :],
            mask=in_channel_in_range[:, None] & inside_input[None, :],
            other=0,
        )  # (R, M): the transposed column tile
        grads = tl.load(
            grad_ptr + grad_offset[:, None] + grad_channel_offset[None, :],
            mask=in_range[:, None] & out_channel_in_range[None, :],
            other=0,
        )  # (M, N)
        if UPCAST:
            columns = columns.to(ACCUMULATOR)
            grads = grads.to(ACCUMULATOR)
        accumulator = tl.dot(
            columns, grads, accumulator, input_precision=PRECISION, out_dtype=ACCUMULATOR
        )
    partial_row = ((split * (tl.num_programs(1)) + tl.program_id(1)) * c_in + in_channels) * c_out
    tl.store(
        partial_ptr + partial_row[:, None] + out_channels[None, :],
        accumulator,
        mask=in_channel_in_range[:, None] & out_channel_in_range[None, :],
    )


# ---- tiles ------------------------------------------------------------------------------------

#: The accumulator of each dtype the convolution kernels take.
ACCUMULATORS = {
    torch.float16: tl.float32,
    torch.bfloat16: tl.float32,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}

# Autotuned tiles of the window kernel (CUDA), keyed on the layer's shape (see _AUTOTUNE_KEY):
# the usual implicit-GEMM shapes for C_out from 32 to 192 and M = N * L in the tens of
# thousands and up. BLOCK_K = 32 input channels per tl.dot step (two 16-wide MMA k-steps in
# 16-bit, four TF32 ones); 3-4 stages of loads in flight. float64 takes only the last, small one
# (its accumulator is twice as wide and its MMA 8x8x4).
WINDOW_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=4, num_stages=3),
]
_AUTOTUNE_KEY = [
    "num_rows",
    "c_out",
    "c_red",
    "GRID_SIZE",
    "KERNEL_SIZE",
    "STRIDE",
    "DILATION",
    "SOURCE_DILATION",
    "PRECISION",
]
# The weight gradient's tile is not autotuned: its summation order depends on the tile and the
# split, so both follow from the shape alone and the result is the same in every run and every
# process. Up to 64 x 64 (input x output channels; narrower for fewer channels, tl.dot's 16 at
# least), 64 positions per tl.dot step.
WEIGHT_GRAD_TILE = {"BLOCK_R": 64, "BLOCK_N": 64, "BLOCK_M": 64}
WEIGHT_GRAD_OPTIONS = {"num_warps": 4, "num_stages": 3}
# Programs the weight gradient aims for: a few waves on a 132-SM H100/H200, so the split of the
# N * L reduction keeps every SM busy. A constant, not the device's SM count (same split, same
# bits, on every GPU).
WEIGHT_GRAD_PROGRAMS = 512
# Under the interpreter (CPU tensors, tests) one tile: 64 positions (numpy runs a tile as one
# array operation, so few wide programs are fastest), 16 channels (tl.dot's minimum), and a
# weight-gradient split only where a test asks for one.
INTERPRETER_TILE = {"BLOCK_M": 64, "BLOCK_N": 16, "BLOCK_K": 16, "BLOCK_R": 16}
INTERPRETER_WEIGHT_GRAD_PROGRAMS = 1


# Launch options of both kernels: floating multiply-add contraction on (the products of an ieee
# float32 tl.dot are fused multiply-adds; explicit, which keeps Triton's default-change warning
# quiet).
OPTIONS = {"enable_fp_fusion": True}


def cudnn_allow_tf32() -> bool:
    """``torch.backends.cudnn.allow_tf32``: the one place the kernels read the policy (tests
    replace it: torch refuses to set the flag once ``torch.testing`` disabled global flags)."""
    return torch.backends.cudnn.allow_tf32


def input_precision(dtype: torch.dtype, device: torch.device) -> str:
    """``tl.dot``'s ``input_precision``: for float32 ``"tf32"`` on CUDA when
    ``torch.backends.cudnn.allow_tf32`` is set (torch's policy for its own convolutions),
    ``"ieee"`` otherwise (and always under the interpreter); float64 ``"ieee"``; float16 and
    bfloat16 ``"tf32"``, tl.dot's default, which multiplies them natively (``"ieee"`` made
    Triton 3.9 lower a bfloat16 dot to float32 FMAs in the weight-gradient kernel)."""
    if dtype == torch.float32:
        tf32 = device.type == "cuda" and cudnn_allow_tf32()
        return "tf32" if tf32 else "ieee"
    return "ieee" if dtype == torch.float64 else "tf32"


def upcast_for_dot(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernels convert their tiles to float32 before ``tl.dot``: only for bfloat16
    under the interpreter, whose ``tl.dot`` multiplies bfloat16's raw bits as numbers (Triton
    3.9). Exact: a product of two bfloat16 values fits in float32's mantissa."""
    return dtype == torch.bfloat16 and device.type == "cpu"


def _weight_grad_tile(c_in: int, c_out: int) -> dict[str, int]:
    """The weight gradient's block sizes for ``c_in`` x ``c_out`` channels per group."""
    return {
        "BLOCK_R": min(WEIGHT_GRAD_TILE["BLOCK_R"], max(16, _launch.next_power_of_2(c_in))),
        "BLOCK_N": min(WEIGHT_GRAD_TILE["BLOCK_N"], max(16, _launch.next_power_of_2(c_out))),
        "BLOCK_M": WEIGHT_GRAD_TILE["BLOCK_M"],
    }


def _prune_window_configs(configs, named_args, **kwargs):
    """float64, or at most 16 source channels per group (the first layer's 3): the small tile
    with 16 channels per step only; otherwise no tile wider than the output channels need."""
    if named_args["source_ptr"].dtype == torch.float64 or named_args["c_red"] <= 16:
        return configs[-1:]
    widest = max(32, _launch.next_power_of_2(named_args["c_out"]))
    kept = [config for config in configs if config.kwargs["BLOCK_N"] <= widest]
    return kept or configs[-1:]


@functools.cache
def _autotuned_window_kernel():
    return triton.autotune(
        configs=WINDOW_CONFIGS,
        key=_AUTOTUNE_KEY,
        prune_configs_by={"early_config_prune": _prune_window_configs},
    )(_launch.kernel_for(_window_conv_kernel, torch.device("cuda")))


def run(kernel, grid, device: torch.device, args: tuple, constants: dict, tile: dict | None):
    """Launch ``kernel`` on ``device`` with ``grid(tile)`` programs (the one launch point here).

    ``tile`` (block sizes and launch options) is fixed for the weight gradient; ``None`` means
    autotuned on CUDA (:data:`WINDOW_CONFIGS`). Under the interpreter every kernel runs with
    :data:`INTERPRETER_TILE`. ``grid`` is the plan's :class:`Grid`: the first launch of a plan
    keeps a :class:`~unfoldconv.kernels._launch.Launcher` on it (for an autotuned kernel, of
    the config the autotuner chose), which every later launch calls with the tensors alone.
    """
    num_tensors = _NUM_TENSORS[kernel]
    launcher = grid.launchers.get(device)
    if launcher is None:
        if device.type == "cpu":
            tile = {name: INTERPRETER_TILE[name] for name in _block_names(kernel)}
        elif tile is None:  # autotune once, then launch the chosen config directly
            autotuned = _autotuned_window_kernel()
            if _launch.is_current(device):
                autotuned[grid](*args, **constants, **OPTIONS)
            else:
                with torch.cuda.device(device):
                    autotuned[grid](*args, **constants, **OPTIONS)
            best = getattr(autotuned, "best_config", None)
            if best is not None:
                grid.launchers[device] = _launch.Launcher(
                    kernel,
                    grid(best.all_kwargs()),
                    num_tensors,
                    args[num_tensors:],
                    {**constants, **best.all_kwargs(), **OPTIONS},
                )
            return
        launcher = grid.launchers[device] = _launch.Launcher(
            kernel, grid(tile), num_tensors, args[num_tensors:], {**constants, **tile, **OPTIONS}
        )
    launcher(*args[:num_tensors])


class Grid:
    """A plan's grid: ``grid(meta)`` is the 3-tuple of programs for the block sizes in ``meta``
    (also what ``triton.autotune`` calls); ``launchers`` holds the plan's launcher per device."""

    __slots__ = ("launchers", "sizes")

    def __init__(self, sizes):
        self.sizes = sizes  # meta -> (x, y, z)
        self.launchers: dict[torch.device, _launch.Launcher] = {}

    def __call__(self, meta) -> tuple[int, int, int]:
        return self.sizes(meta)


def _block_names(kernel) -> tuple[str, ...]:
    if kernel is _weight_grad_kernel:
        return ("BLOCK_R", "BLOCK_N", "BLOCK_M")
    return ("BLOCK_M", "BLOCK_N", "BLOCK_K")


# tensor arguments (the leading ones) of each kernel
_NUM_TENSORS = {_window_conv_kernel: 4, _weight_grad_kernel: 3}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---- launchers ------------------------------------------------------------------------------


def window_conv(
    source: torch.Tensor,
    packed_weight: torch.Tensor,
    bias: torch.Tensor | None,
    output: torch.Tensor,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    stride: Sequence[int],
    pad_before: Sequence[int],
    source_dilation: Sequence[int],
    flip_weight: bool = False,
) -> None:
    """Fill ``output`` ``(N, groups * C_out, *output_size)`` (any strides) with the windowed
    product of ``source`` ``(N, groups * C_red, *source_size)`` and ``packed_weight``
    ``(groups, K, C_red, C_out)`` (contiguous), plus ``bias``: at output position ``o`` and
    kernel offset ``k`` the source is read at ``(o * stride + k * dilation - pad_before) /
    source_dilation`` where that is a whole number inside the source, and multiplied by the
    packed weight's offset ``k`` (``K - 1 - k`` with ``flip_weight``)."""
    plan = _window_plan(
        tuple(source.shape),
        source.stride(),
        tuple(packed_weight.shape),
        tuple(output.shape),
        output.stride(),
        source.dtype,
        source.device,
        cudnn_allow_tf32(),
        bias is not None,
        (tuple(kernel_size), tuple(dilation), tuple(stride), tuple(pad_before)),
        tuple(source_dilation),
        flip_weight,
    )
    if plan is None:  # nothing to compute
        return
    scalars, constants, grid = plan
    # bias: a dummy pointer without one
    tensors = (source, packed_weight, output if bias is None else bias, output)
    run(_window_conv_kernel, grid, source.device, tensors + scalars, constants, None)


@_launch.plan_cache
def _window_plan(
    source_shape, source_strides, weight_shape, output_shape, output_strides, dtype, device,
    allow_tf32, has_bias, window, source_dilation, flip_weight,
):  # fmt: skip
    """The launch plan of :func:`window_conv` per shape, strides, dtype, device and policy
    (``allow_tf32`` is in the key so the cached precision follows the flag): the scalar
    arguments, the compile-time constants and the grid. Cached: a layer's call builds none."""
    kernel_size, dilation, stride, pad_before = window
    n = source_shape[0]
    groups, _, c_red, c_out = weight_shape  # (groups, K, C_red, C_out)
    output_size = output_shape[2:]
    grid_size = tuple(_cdiv(size, step) for size, step in zip(output_size, source_dilation))
    num_rows = n * math.prod(grid_size)
    if num_rows == 0 or c_out == 0:
        return None
    num_phases = math.prod(source_dilation)
    scalars = (
        num_rows,
        c_out,
        c_red,
        source_strides[0],
        source_strides[1],
        output_strides[0],
        output_strides[1],
        source_shape[2:],
        source_strides[2:],
        output_size,
        output_strides[2:],
    )
    constants = {
        "GRID_SIZE": grid_size,
        "KERNEL_SIZE": kernel_size,
        "DILATION": dilation,
        "STRIDE": stride,
        "PAD_BEFORE": pad_before,
        "SOURCE_DILATION": source_dilation,
        "KERNEL_STEP": tuple(
            step // math.gcd(dil, step) for dil, step in zip(dilation, source_dilation)
        ),
        "NUM_PHASES": num_phases,
        "GRID_NUMEL": math.prod(grid_size),
        "D": len(kernel_size),
        "HAS_BIAS": has_bias,
        "FLIP_WEIGHT": bool(flip_weight),
        "INDEX_64": _launch.sizes_need_int64(
            (source_shape, source_strides), (output_shape, output_strides)
        ),
        "ACCUMULATOR": ACCUMULATORS[dtype],
        "PRECISION": input_precision(dtype, device),
        "UPCAST": upcast_for_dot(dtype, device),
    }

    def grid(meta):
        return (
            _cdiv(num_rows, meta["BLOCK_M"]),
            _cdiv(c_out, meta["BLOCK_N"]),
            groups * num_phases,
        )

    return scalars, constants, Grid(grid)


def weight_grad_partials(
    input: torch.Tensor,
    grad_output: torch.Tensor,
    groups: int,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    stride: Sequence[int],
    pad_before: Sequence[int],
) -> torch.Tensor:
    """``(groups, K, C_in / groups, C_out / groups)``: the weight gradient, summed in a fixed
    order (see the module docstring), in float32 (float64 for float64)."""
    plan = _weight_grad_plan(
        tuple(input.shape),
        input.stride(),
        tuple(grad_output.shape),
        grad_output.stride(),
        groups,
        input.dtype,
        input.device,
        cudnn_allow_tf32(),
        (tuple(kernel_size), tuple(dilation), tuple(stride), tuple(pad_before)),
        INTERPRETER_WEIGHT_GRAD_PROGRAMS if input.device.type == "cpu" else WEIGHT_GRAD_PROGRAMS,
    )
    partials_shape, scalars, constants, grid, tile = plan
    accumulator = torch.float64 if input.dtype == torch.float64 else torch.float32
    if grid is None:  # nothing to sum
        return input.new_zeros(partials_shape[1:], dtype=accumulator)
    partials = torch.empty(partials_shape, dtype=accumulator, device=input.device)
    args = (input, grad_output, partials, *scalars)
    run(_weight_grad_kernel, grid, input.device, args, constants, tile)
    return partials.sum(0)  # a fixed-order reduction over the split axis


@_launch.plan_cache
def _weight_grad_plan(
    input_shape, input_strides, grad_shape, grad_strides, groups, dtype, device, allow_tf32,
    window, target_programs,
):  # fmt: skip
    """The launch plan of :func:`weight_grad_partials` (see :func:`_window_plan`): the partial
    sums' shape ``(split, groups, K, C_in / groups, C_out / groups)``, the scalar arguments,
    the constants, the grid (``None``: nothing to sum) and the CUDA tile. The split follows
    from the shape alone, so every run sums in the same order."""
    kernel_size, dilation, stride, pad_before = window
    n, c_in = input_shape[:2]
    c_out = grad_shape[1]
    grid_size = grad_shape[2:]
    kernel_numel = math.prod(kernel_size)
    c_in_group, c_out_group = c_in // groups, c_out // groups
    num_rows = n * math.prod(grid_size)
    if num_rows == 0 or c_in_group == 0 or c_out_group == 0:
        return (1, groups, kernel_numel, c_in_group, c_out_group), None, None, None, None
    blocks = (
        INTERPRETER_TILE if device.type == "cpu" else _weight_grad_tile(c_in_group, c_out_group)
    )
    block_m = blocks["BLOCK_M"]
    tiles = _cdiv(c_in_group, blocks["BLOCK_R"]) * _cdiv(c_out_group, blocks["BLOCK_N"])
    row_blocks = _cdiv(num_rows, block_m)
    split = min(row_blocks, max(1, _cdiv(target_programs, tiles * groups * kernel_numel)))
    rows_per_split = _cdiv(row_blocks, split) * block_m
    split = _cdiv(num_rows, rows_per_split)
    partials_shape = (split, groups, kernel_numel, c_in_group, c_out_group)
    scalars = (
        num_rows,
        rows_per_split,
        c_in_group,
        c_out_group,
        input_strides[0],
        input_strides[1],
        grad_strides[0],
        grad_strides[1],
        input_shape[2:],
        input_strides[2:],
        grad_strides[2:],
    )
    contiguous = (partials_shape, torch.empty(partials_shape, device="meta").stride())
    constants = {
        "GRID_SIZE": grid_size,
        "KERNEL_SIZE": kernel_size,
        "DILATION": dilation,
        "STRIDE": stride,
        "PAD_BEFORE": pad_before,
        "GRID_NUMEL": math.prod(grid_size),
        "KERNEL_NUMEL": kernel_numel,
        "D": len(kernel_size),
        "INDEX_64": _launch.sizes_need_int64(
            (input_shape, input_strides), (grad_shape, grad_strides), contiguous
        ),
        "ACCUMULATOR": ACCUMULATORS[dtype],
        "PRECISION": input_precision(dtype, device),
        "UPCAST": upcast_for_dot(dtype, device),
    }

    def grid(meta):
        return (tiles, groups * kernel_numel, split)

    tile = {**_weight_grad_tile(c_in_group, c_out_group), **WEIGHT_GRAD_OPTIONS}
    return partials_shape, scalars, constants, Grid(grid), tile

"""The unfold (im2col) gather kernel for any number ``d`` of spatial dims, and its launcher.

The columns ``(N * C * K, L)`` are written tile by tile: a program owns ``BLOCK_R`` consecutive
rows ``(sample, channel, kernel offset)`` (one row, a scalar, unless the image is smaller than
the tile) times a ``BLOCK_O x BLOCK_W`` tile of the output grid, ``BLOCK_W`` positions along
the inner dims (the last one alone in the common case: a lane's position there is its index,
no division) and ``BLOCK_O`` along the flattened outer dims (decomposed once per program, one
coordinate per ``BLOCK_O`` lane). Stores run along the contiguous inner axis. A row's kernel
offset and a position meet at the input position

    virtual_i = out_pos_i * stride_i + kernel_offset_i * dilation_i - pad_before_i

on the padded, input-dilated grid, read from ``input`` at ``virtual_i / input_dilation_i``
through its own strides (channels_last, slices and expanded inputs are read in place) unless it
falls into the padding or between dilated elements (a zero).

The window, the channel count and the spatial sizes are compile-time constants (a layer compiles
once per input size anyway), so what index arithmetic is left divides by constants:
multiply-shift on the integer pipe, not the division loop a runtime divisor costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl

from unfoldconv.kernels import _launch

if TYPE_CHECKING:
    from unfoldconv._geometry import Geometry


@triton.jit
def _unfold_kernel(
    input_ptr,
    columns_ptr,
    num_rows,  # N * C * K
    input_stride_n,
    input_stride_c,
    input_strides,  # a d-tuple
    CHANNELS: tl.constexpr,
    INPUT_SIZE: tl.constexpr,  # d-tuples from here on
    OUT_SIZE: tl.constexpr,
    KERNEL_SIZE: tl.constexpr,
    DILATION: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    INPUT_DILATION: tl.constexpr,
    KERNEL_NUMEL: tl.constexpr,
    OUTER_NUMEL: tl.constexpr,  # prod(OUT_SIZE[:SPLIT])
    INNER_NUMEL: tl.constexpr,  # prod(OUT_SIZE[SPLIT:])
    D: tl.constexpr,
    SPLIT: tl.constexpr,
    FLIP: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_O: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    # the program's tile: inner tiles fastest, then outer tiles, then row blocks (scalars)
    num_w_tiles: tl.constexpr = (INNER_NUMEL + BLOCK_W - 1) // BLOCK_W
    num_o_tiles: tl.constexpr = (OUTER_NUMEL + BLOCK_O - 1) // BLOCK_O
    pid = tl.program_id(0)
    if INDEX_64:
        pid = pid.to(tl.int64)
    w_tile = pid % num_w_tiles
    o_tile = (pid // num_w_tiles) % num_o_tiles
    row_block = pid // (num_w_tiles * num_o_tiles)
    rows = row_block * BLOCK_R + tl.arange(0, BLOCK_R)[:, None, None]  # (R, 1, 1)
    outer = o_tile * BLOCK_O + tl.arange(0, BLOCK_O)[None, :, None]  # (1, O, 1)
    inner = w_tile * BLOCK_W + tl.arange(0, BLOCK_W)[None, None, :]  # (1, 1, W)
    in_range = (rows < num_rows) & (outer < OUTER_NUMEL) & (inner < INNER_NUMEL)

    # per row, once: (sample, channel, kernel offset)
    kernel_offset = rows % KERNEL_NUMEL
    sample_channel = rows // KERNEL_NUMEL
    in_offset = (sample_channel // CHANNELS) * input_stride_n + (
        sample_channel % CHANNELS
    ) * input_stride_c  # (R, 1, 1)

    # per lane of the inner axis and per lane of the outer axis: the output coordinates
    out_index = ()
    rest = inner
    for i in tl.static_range(D - 1, SPLIT - 1, -1):  # row-major: the last dim varies fastest
        if i == SPLIT:
            index = rest
        else:
            index = rest % OUT_SIZE[i]
            rest = rest // OUT_SIZE[i]
        out_index = (index,) + out_index  # noqa: RUF005 (Triton cannot compile *unpacking)
    rest = outer
    for i in tl.static_range(SPLIT - 1, -1, -1):
        if i == 0:
            index = rest
        else:
            index = rest % OUT_SIZE[i]
            rest = rest // OUT_SIZE[i]
        out_index = (index,) + out_index  # noqa: RUF005

    inside_input = in_range
    kernel_rest = kernel_offset
    for i in tl.static_range(D - 1, -1, -1):
        kernel_index = kernel_rest % KERNEL_SIZE[i]  # (R, 1, 1)
        kernel_rest = kernel_rest // KERNEL_SIZE[i]
        if FLIP:
            kernel_index = KERNEL_SIZE[i] - 1 - kernel_index
        virtual = out_index[i] * STRIDE[i] + (kernel_index * DILATION[i] - PAD_BEFORE[i])
        if INPUT_DILATION[i] == 1:
            in_pos = virtual
            inside_input = inside_input & (virtual >= 0) & (virtual < INPUT_SIZE[i])
        else:
            in_pos = virtual // INPUT_DILATION[i]
            inside_input = (
                inside_input
                & (virtual >= 0)
                & (in_pos * INPUT_DILATION[i] == virtual)
                & (in_pos < INPUT_SIZE[i])
            )
        in_offset = in_offset + in_pos * input_strides[i]
    values = tl.load(input_ptr + in_offset, mask=inside_input, other=0)
    column = rows * (OUTER_NUMEL * INNER_NUMEL) + outer * INNER_NUMEL + inner
    tl.store(columns_ptr + column, values, mask=in_range)


@_launch.plan_cache
def _plan(input_shape, input_strides, window, input_dilation, out_size, flip):
    """The :class:`~unfoldconv.kernels._launch.Launcher` of one unfold into contiguous columns
    (``None``: nothing to write), per input shape and strides, window, input dilation and
    output grid."""
    kernel_size, dilation, pad_before, stride = window
    n, c, *input_size = input_shape
    num_rows = n * c * math.prod(kernel_size)
    if num_rows == 0 or math.prod(out_size) == 0:
        return None
    columns_shape = (num_rows, math.prod(out_size))
    index_64 = _launch.sizes_need_int64(
        (input_shape, input_strides), (columns_shape, (columns_shape[1], 1))
    )
    blocks = _launch.position_tile(num_rows, out_size)
    split = blocks["SPLIT"]
    grid = (_launch.tile_programs(num_rows, out_size, blocks), 1, 1)
    tail = (num_rows, input_strides[0], input_strides[1], tuple(input_strides[2:]))
    named = {
        "CHANNELS": c,
        "INPUT_SIZE": tuple(input_size),
        "OUT_SIZE": tuple(out_size),
        "KERNEL_SIZE": tuple(kernel_size),
        "DILATION": tuple(dilation),
        "STRIDE": tuple(stride),
        "PAD_BEFORE": tuple(pad_before),
        "INPUT_DILATION": tuple(input_dilation),
        "KERNEL_NUMEL": math.prod(kernel_size),
        "OUTER_NUMEL": math.prod(out_size[:split]),
        "INNER_NUMEL": math.prod(out_size[split:]),
        "D": len(kernel_size),
        "FLIP": bool(flip),
        "INDEX_64": index_64,
        **blocks,
        **_launch.OPTIONS,
    }
    return _launch.Launcher(_unfold_kernel, grid, 2, tail, named)


def launch(
    input: torch.Tensor,
    columns: torch.Tensor,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    pad_before: Sequence[int],
    stride: Sequence[int],
    input_dilation: Sequence[int],
    out_size: Sequence[int],
    flip: bool,
) -> None:
    """Fill the contiguous ``columns`` ``(N, C * K, L)`` from ``input`` ``(N, C, *spatial)``.

    ``kernel_size``, ``dilation``, ``pad_before``, ``stride``, ``input_dilation`` and
    ``out_size`` (the window positions per dim) are d-tuples; ``flip`` reverses the kernel
    offsets. The plan is cached per shape, strides and window (see :func:`_plan`).
    """
    plan = _plan(
        tuple(input.shape),
        input.stride(),
        (tuple(kernel_size), tuple(dilation), tuple(pad_before), tuple(stride)),
        tuple(input_dilation),
        tuple(out_size),
        bool(flip),
    )
    if plan is not None:
        plan(input, columns)


@_launch.plan_cache
def _geometry_plan(input_shape, input_strides, geometry: Geometry, input_dilation):
    """``(columns shape, launcher)`` of :func:`unfold`, cached per input shape, strides,
    geometry and input dilation: a layer's call computes no size and builds no argument."""
    n, c, *input_size = input_shape
    d = len(geometry.kernel_size)
    input_dilation = (1,) * d if input_dilation is None else input_dilation
    out_size = _launch.window_output_size(
        input_size,
        geometry.kernel_size,
        geometry.dilation,
        geometry.padding,
        geometry.stride,
        input_dilation,
    )
    window = (
        geometry.kernel_size,
        geometry.dilation,
        tuple(lo for lo, _ in geometry.padding),
        geometry.stride,
    )
    launcher = _plan(input_shape, input_strides, window, input_dilation, out_size, geometry.flip)
    return (n, c * geometry.kernel_numel, math.prod(out_size)), launcher


def unfold(
    input: torch.Tensor,
    geometry: Geometry,
    out: torch.Tensor | None = None,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C * K, L)``; see :func:`unfoldconv.kernels.unfold`."""
    dilation_key = None if input_dilation is None else tuple(input_dilation)
    shape, launcher = _geometry_plan(tuple(input.shape), input.stride(), geometry, dilation_key)
    columns = input.new_empty(shape) if out is None else _launch.workspace(out, shape, input.dtype)
    if launcher is not None:
        launcher(input, columns)
    return columns

"""The fold (col2im) kernel in gather form, for any number ``d`` of spatial dims, and its launcher.

Each program owns a ``BLOCK_ROWS x BLOCK_S`` tile of the contiguous output ``(N * C, *spatial)``
(stores run along the spatial positions) and sums, for each output element, the columns that
read it: kernel offset by kernel offset in row-major order, the offset ``kernel_offset`` hitting
block position

    out_pos_i = (in_pos_i * input_dilation_i + pad_before_i - kernel_offset_i * dilation_i)
                / stride_i

when that is a whole number inside ``[0, out_size_i)`` in every dim (``hits``). No atomics and a
fixed order, so the result is bit-identical from run to run; one pass over the output.
float16/bfloat16 accumulate in float32, bool as an int (a logical or, as ``F.fold``).
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

# The accumulator of each dtype: float32 for the 16-bit floats, int32 for bool (then != 0);
# every other dtype sums in itself, as the torch route does (integers wrap the same way).
_ACCUMULATOR = {
    torch.float16: tl.float32,
    torch.bfloat16: tl.float32,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
    torch.bool: tl.int32,
    torch.int8: tl.int8,
    torch.int16: tl.int16,
    torch.int32: tl.int32,
    torch.int64: tl.int64,
    torch.uint8: tl.uint8,
}


@triton.jit
def _fold_kernel(
    columns_ptr,
    output_ptr,
    num_rows,  # N * C
    spatial_numel,  # prod(input_size)
    channels,
    kernel_numel,
    columns_stride_n,
    columns_stride_row,
    columns_stride_l,
    input_size,  # d-tuples from here on
    out_size,
    KERNEL_SIZE: tl.constexpr,  # the window's d-tuples are compile-time constants: a layer
    DILATION: tl.constexpr,  # compiles once, and the index arithmetic divides by constants
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    INPUT_DILATION: tl.constexpr,
    D: tl.constexpr,
    FLIP: tl.constexpr,
    INDEX_64: tl.constexpr,
    ACCUMULATOR: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    pid = tl.program_id(0)
    num_s_blocks = (spatial_numel + BLOCK_S - 1) // BLOCK_S
    rows = (pid // num_s_blocks) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)[:, None]  # (R, 1)
    in_pos = (pid % num_s_blocks) * BLOCK_S + tl.arange(0, BLOCK_S)[None, :]  # (1, S)
    if INDEX_64:
        rows = rows.to(tl.int64)
        in_pos = in_pos.to(tl.int64)
    in_range = (rows < num_rows) & (in_pos < spatial_numel)
    # first column row of each (sample, channel): rows (c * K + kernel_offset) of sample n
    row_start = (rows // channels) * columns_stride_n + (
        rows % channels
    ) * kernel_numel * columns_stride_row

    # each output element's coordinate on the padded, input-dilated grid, per dim
    virtual = ()
    rest = in_pos
    for i in tl.static_range(D - 1, -1, -1):
        coordinate = (rest % input_size[i]) * INPUT_DILATION[i] + PAD_BEFORE[i]
        virtual = (coordinate,) + virtual  # noqa: RUF005 (Triton cannot compile *unpacking)
        rest = rest // input_size[i]

    acc = tl.full([BLOCK_ROWS, BLOCK_S], 0, dtype=ACCUMULATOR)
    for kernel_offset in range(kernel_numel):  # fixed row-major order: deterministic sums
        if INDEX_64:
            kernel_offset = kernel_offset.to(tl.int64)
        hits = in_pos < spatial_numel  # (1, S)
        block = in_pos * 0  # flat block position that reads the element at this offset
        multiplier = 1
        kernel_rest = kernel_offset
        for i in tl.static_range(D - 1, -1, -1):
            kernel_index = kernel_rest % KERNEL_SIZE[i]
            kernel_rest = kernel_rest // KERNEL_SIZE[i]
            if FLIP:
                kernel_index = KERNEL_SIZE[i] - 1 - kernel_index
            shifted = virtual[i] - kernel_index * DILATION[i]  # out_pos * stride on a hit
            out_pos = shifted // STRIDE[i]
            hits = hits & (shifted >= 0) & (out_pos * STRIDE[i] == shifted)
            hits = hits & (out_pos < out_size[i])
            block = block + out_pos * multiplier
            multiplier = multiplier * out_size[i]
        address = row_start + kernel_offset * columns_stride_row + block * columns_stride_l
        values = tl.load(columns_ptr + address, mask=in_range & hits, other=0)
        acc += values.to(ACCUMULATOR)
    result = acc.to(output_ptr.dtype.element_ty)
    tl.store(output_ptr + rows * spatial_numel + in_pos, result, mask=in_range)


def launch(
    columns: torch.Tensor,
    output: torch.Tensor,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    pad_before: Sequence[int],
    stride: Sequence[int],
    input_dilation: Sequence[int],
    out_size: Sequence[int],
    flip: bool,
) -> None:
    """Fill the contiguous ``output`` ``(N, C, *spatial)`` from ``columns`` ``(N, C * K, L)``."""
    n, c, *input_size = output.shape
    num_rows, spatial_numel = n * c, math.prod(input_size)
    if num_rows == 0:
        return
    block_rows, block_s = _launch.tile(num_rows, spatial_numel)
    grid = (_launch.num_programs(num_rows, spatial_numel, block_rows, block_s),)
    _launch.launch(
        _fold_kernel,
        grid,
        columns.device,
        columns,
        output,
        num_rows,
        spatial_numel,
        c,
        math.prod(kernel_size),
        *columns.stride(),
        tuple(input_size),
        tuple(out_size),
        KERNEL_SIZE=tuple(kernel_size),
        DILATION=tuple(dilation),
        STRIDE=tuple(stride),
        PAD_BEFORE=tuple(pad_before),
        INPUT_DILATION=tuple(input_dilation),
        D=len(kernel_size),
        FLIP=bool(flip),
        INDEX_64=_launch.needs_int64(columns, output),
        ACCUMULATOR=_ACCUMULATOR[columns.dtype],
        BLOCK_ROWS=block_rows,
        BLOCK_S=block_s,
        **_launch.OPTIONS,
    )


def fold(
    columns: torch.Tensor,
    input_size: Sequence[int],
    geometry: Geometry,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C * K, L) -> (N, C, *input_size)``; see :func:`unfoldconv.kernels.fold`."""
    n = columns.shape[0]
    channels = columns.shape[1] // math.prod(geometry.kernel_size)
    d = len(geometry.kernel_size)
    input_dilation = (1,) * d if input_dilation is None else tuple(input_dilation)
    out_size = _launch.window_output_size(
        input_size,
        geometry.kernel_size,
        geometry.dilation,
        geometry.padding,
        geometry.stride,
        input_dilation,
    )
    output = columns.new_empty((n, channels, *input_size))  # every element is written once
    launch(
        columns,
        output,
        geometry.kernel_size,
        geometry.dilation,
        [lo for lo, _ in geometry.padding],
        geometry.stride,
        input_dilation,
        out_size,
        geometry.flip,
    )
    return output

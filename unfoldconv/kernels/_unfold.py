"""The unfold (im2col) gather kernel for any number ``d`` of spatial dims, and its launcher.

Each program writes a ``BLOCK_ROWS x BLOCK_L`` tile of the contiguous columns
``(N * C * K, L)``: stores run along ``L``, the contiguous axis. A row ``(sample, channel,
kernel_offset)`` and a block position ``out_pos`` meet at the input position

    virtual_i = out_pos_i * stride_i + kernel_offset_i * dilation_i - pad_before_i

on the padded, input-dilated grid, read from ``input`` at ``virtual_i / input_dilation_i``
through its own strides (channels_last, slices and expanded inputs are read in place) unless it
falls into the padding or between dilated elements (``inside_input`` false: a zero).
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
    num_blocks,  # L
    channels,
    kernel_numel,
    input_stride_n,
    input_stride_c,
    input_size,  # d-tuples from here on
    input_strides,
    out_size,
    KERNEL_SIZE: tl.constexpr,  # the window's d-tuples are compile-time constants: a layer
    DILATION: tl.constexpr,  # compiles once, and the index arithmetic divides by constants
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    INPUT_DILATION: tl.constexpr,
    D: tl.constexpr,
    FLIP: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    pid = tl.program_id(0)
    num_l_blocks = (num_blocks + BLOCK_L - 1) // BLOCK_L
    rows = (pid // num_l_blocks) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)[:, None]  # (R, 1)
    out_pos = (pid % num_l_blocks) * BLOCK_L + tl.arange(0, BLOCK_L)[None, :]  # (1, L)
    if INDEX_64:
        rows = rows.to(tl.int64)
        out_pos = out_pos.to(tl.int64)
    in_range = (rows < num_rows) & (out_pos < num_blocks)

    kernel_offset = rows % kernel_numel
    sample_channel = rows // kernel_numel
    in_offset = (sample_channel // channels) * input_stride_n + (
        sample_channel % channels
    ) * input_stride_c
    inside_input = in_range
    kernel_rest = kernel_offset
    out_rest = out_pos
    for i in tl.static_range(D - 1, -1, -1):  # row-major: the last dim varies fastest
        kernel_index = kernel_rest % KERNEL_SIZE[i]  # (R, 1)
        kernel_rest = kernel_rest // KERNEL_SIZE[i]
        out_index = out_rest % out_size[i]  # (1, L)
        out_rest = out_rest // out_size[i]
        if FLIP:
            kernel_index = KERNEL_SIZE[i] - 1 - kernel_index
        virtual = out_index * STRIDE[i] + (kernel_index * DILATION[i] - PAD_BEFORE[i])  # (R, L)
        in_pos = virtual // INPUT_DILATION[i]
        inside_input = (
            inside_input
            & (virtual >= 0)
            & (in_pos * INPUT_DILATION[i] == virtual)
            & (in_pos < input_size[i])
        )
        in_offset = in_offset + in_pos * input_strides[i]
    values = tl.load(input_ptr + in_offset, mask=inside_input, other=0)
    tl.store(columns_ptr + rows * num_blocks + out_pos, values, mask=in_range)


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
    """Fill the contiguous ``columns`` ``(N, C * K, L)`` from ``input`` ``(N, C, *spatial)``."""
    n, c, *input_size = input.shape
    kernel_numel = math.prod(kernel_size)
    num_rows, num_blocks = n * c * kernel_numel, math.prod(out_size)
    if num_rows == 0:
        return
    block_rows, block_l = _launch.tile(num_rows, num_blocks)
    grid = (_launch.num_programs(num_rows, num_blocks, block_rows, block_l),)
    _launch.launch(
        _unfold_kernel,
        grid,
        input.device,
        input,
        columns,
        num_rows,
        num_blocks,
        c,
        kernel_numel,
        input.stride(0),
        input.stride(1),
        tuple(input_size),
        tuple(input.stride()[2:]),
        tuple(out_size),
        KERNEL_SIZE=tuple(kernel_size),
        DILATION=tuple(dilation),
        STRIDE=tuple(stride),
        PAD_BEFORE=tuple(pad_before),
        INPUT_DILATION=tuple(input_dilation),
        D=len(kernel_size),
        FLIP=bool(flip),
        INDEX_64=_launch.needs_int64(input, columns),
        BLOCK_ROWS=block_rows,
        BLOCK_L=block_l,
        **_launch.OPTIONS,
    )


def unfold(
    input: torch.Tensor,
    geometry: Geometry,
    out: torch.Tensor | None = None,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C * K, L)``; see :func:`unfoldconv.kernels.unfold`."""
    n, c, *input_size = input.shape
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
    shape = (n, c * math.prod(geometry.kernel_size), math.prod(out_size))
    columns = input.new_empty(shape) if out is None else _launch.workspace(out, shape, input.dtype)
    launch(
        input,
        columns,
        geometry.kernel_size,
        geometry.dilation,
        [lo for lo, _ in geometry.padding],
        geometry.stride,
        input_dilation,
        out_size,
        geometry.flip,
    )
    return columns

"""The fold (col2im) kernel in gather form, for any number ``d`` of spatial dims, and its launcher.

Each output element ``(sample, channel, position)`` of the contiguous ``(N * C, *spatial)``
output sums the columns that read it. The positions are split by *stride phase*: along dim ``i``
the kernel offsets that reach position ``x_i`` depend only on ``x_i mod phase_step_i``
(``phase_step_i = stride_i / gcd(input_dilation_i, stride_i)``), and within a phase they are
``first_i, first_i + kernel_step_i, ...`` (``kernel_step_i = stride_i / gcd(dilation_i,
stride_i)``), the offset ``first_i + j * kernel_step_i`` hitting block position
``base_i(x_i) - j * dilation_i / gcd(dilation_i, stride_i)``. A program owns one phase and a
tile of it (``BLOCK_R`` sample-channels x ``BLOCK_O`` outer x ``BLOCK_W`` inner positions, as
the unfold), finds its phase's offsets once (scalars), and loops over exactly those: 4/2/2/1
of the 9 offsets of a 3x3 kernel at stride 2, all of them at stride 1. No index arithmetic in
the loop beyond an add and a compare per dim, no division anywhere per element.

The offsets are visited in increasing row-major order (the columns' row order, also with
flipped kernels), the order of the torch route's adds; no atomics: the result is bit-identical
from run to run. Phases of one tile are neighbouring programs (stores of one cache line land
together). float16/bfloat16 accumulate in float32, bool as an int (a logical or, as
``F.fold``).
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
    columns_stride_n,
    columns_stride_row,
    columns_stride_l,
    CHANNELS: tl.constexpr,
    INPUT_SIZE: tl.constexpr,  # d-tuples from here on
    OUT_SIZE: tl.constexpr,
    KERNEL_SIZE: tl.constexpr,
    DILATION: tl.constexpr,
    STRIDE: tl.constexpr,
    PAD_BEFORE: tl.constexpr,
    INPUT_DILATION: tl.constexpr,
    PHASE_STEP: tl.constexpr,  # stride / gcd(input_dilation, stride)
    KERNEL_STEP: tl.constexpr,  # stride / gcd(dilation, stride)
    GRID_STEP: tl.constexpr,  # input_dilation / gcd(input_dilation, stride)
    BLOCK_STEP: tl.constexpr,  # dilation / gcd(dilation, stride)
    GRID_SIZE: tl.constexpr,  # positions of a phase per dim: ceil(INPUT_SIZE / PHASE_STEP)
    NUM_PHASES: tl.constexpr,  # prod(PHASE_STEP)
    INPUT_STEP: tl.constexpr,  # the row-major strides of INPUT_SIZE, OUT_SIZE, KERNEL_SIZE
    OUT_STEP: tl.constexpr,
    KERNEL_STRIDES: tl.constexpr,
    INPUT_NUMEL: tl.constexpr,
    KERNEL_NUMEL: tl.constexpr,
    OUTER_NUMEL: tl.constexpr,  # prod(GRID_SIZE[:SPLIT])
    INNER_NUMEL: tl.constexpr,  # prod(GRID_SIZE[SPLIT:])
    D: tl.constexpr,
    SPLIT: tl.constexpr,
    FLIP: tl.constexpr,
    INDEX_64: tl.constexpr,
    ACCUMULATOR: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_O: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    # the program's phase and tile (scalars): phases fastest, then inner, outer, row blocks
    num_w_tiles: tl.constexpr = (INNER_NUMEL + BLOCK_W - 1) // BLOCK_W
    num_o_tiles: tl.constexpr = (OUTER_NUMEL + BLOCK_O - 1) // BLOCK_O
    pid = tl.program_id(0)
    if INDEX_64:
        pid = pid.to(tl.int64)
    phase = pid % NUM_PHASES
    tile = pid // NUM_PHASES
    w_tile = tile % num_w_tiles
    o_tile = (tile // num_w_tiles) % num_o_tiles
    row_block = tile // (num_w_tiles * num_o_tiles)
    rows = row_block * BLOCK_R + tl.arange(0, BLOCK_R)[:, None, None]  # (R, 1, 1)
    outer = o_tile * BLOCK_O + tl.arange(0, BLOCK_O)[None, :, None]  # (1, O, 1)
    inner = w_tile * BLOCK_W + tl.arange(0, BLOCK_W)[None, None, :]  # (1, 1, W)
    in_range = (rows < num_rows) & (outer < OUTER_NUMEL) & (inner < INNER_NUMEL)
    # first column row of each (sample, channel): rows (c * K + kernel_offset) of sample n
    row_start = (rows // CHANNELS) * columns_stride_n + (rows % CHANNELS) * (
        KERNEL_NUMEL * columns_stride_row
    )  # (R, 1, 1)

    # per lane of the inner axis and per lane of the outer axis: the phase grid's coordinates
    grid_index = ()
    rest = inner
    for i in tl.static_range(D - 1, SPLIT - 1, -1):  # row-major: the last dim varies fastest
        if i == SPLIT:
            index = rest
        else:
            index = rest % GRID_SIZE[i]
            rest = rest // GRID_SIZE[i]
        grid_index = (index,) + grid_index  # noqa: RUF005 (Triton cannot compile *unpacking)
    rest = outer
    for i in tl.static_range(SPLIT - 1, -1, -1):
        if i == 0:
            index = rest
        else:
            index = rest % GRID_SIZE[i]
            rest = rest // GRID_SIZE[i]
        grid_index = (index,) + grid_index  # noqa: RUF005

    # Once per program, per dim: the output position (phase grid * step + phase), the first
    # kernel offset reaching this phase and how many do, and the block position the first one
    # reads (base): offset first + j * KERNEL_STEP reads base - j * BLOCK_STEP.
    output_offset = rows * INPUT_NUMEL
    first_offset = ()
    num_offsets = ()
    base = ()
    phase_rest = phase
    num_reaching = 1
    for i in tl.static_range(D - 1, -1, -1):
        phase_index = phase_rest % PHASE_STEP[i]  # scalar
        phase_rest = phase_rest // PHASE_STEP[i]
        position = grid_index[i] * PHASE_STEP[i] + phase_index
        in_range = in_range & (position < INPUT_SIZE[i])
        output_offset = output_offset + position * INPUT_STEP[i]
        # the virtual (padded, input-dilated) coordinate minus GRID_STEP * STRIDE * grid index
        residue = phase_index * INPUT_DILATION[i] + PAD_BEFORE[i]
        first = phase_index * 0 + KERNEL_STEP[i]  # none reaches unless found below
        for r in tl.static_range(KERNEL_STEP[i] - 1, -1, -1):  # the smallest one wins
            first = tl.where((residue - r * DILATION[i]) % STRIDE[i] == 0, r, first)
        count = (KERNEL_SIZE[i] - first + KERNEL_STEP[i] - 1) // KERNEL_STEP[i]
        count = tl.where(first < KERNEL_STEP[i], count, 0)
        first_offset = (first,) + first_offset  # noqa: RUF005
        num_offsets = (count,) + num_offsets  # noqa: RUF005
        # exact where an offset reaches (unused where none does)
        shift = (residue - first * DILATION[i]) // STRIDE[i]
        base = (grid_index[i] * GRID_STEP[i] + shift,) + base  # noqa: RUF005
        num_reaching = num_reaching * count

    acc = tl.full([BLOCK_R, BLOCK_O, BLOCK_W], 0, dtype=ACCUMULATOR)
    for step in range(num_reaching):  # increasing column rows: a fixed, deterministic order
        rank = step
        if INDEX_64:
            rank = rank.to(tl.int64)
        block = rows * 0  # flat block position read at this offset
        column = 0  # row-major kernel offset: the column row within the channel's K rows
        hits = in_range
        for i in tl.static_range(D - 1, -1, -1):
            j = rank % num_offsets[i]
            rank = rank // num_offsets[i]
            kernel_index = first_offset[i] + j * KERNEL_STEP[i]
            if FLIP:  # column K - 1 - kernel index: visit the reaching offsets backwards
                j = num_offsets[i] - 1 - j
                kernel_index = KERNEL_SIZE[i] - 1 - (first_offset[i] + j * KERNEL_STEP[i])
            column = column + kernel_index * KERNEL_STRIDES[i]
            out_pos = base[i] - j * BLOCK_STEP[i]
            hits = hits & (out_pos >= 0) & (out_pos < OUT_SIZE[i])
            block = block + out_pos * OUT_STEP[i]
        address = row_start + column * columns_stride_row + block * columns_stride_l
        values = tl.load(columns_ptr + address, mask=hits, other=0)
        acc += values.to(ACCUMULATOR)
    tl.store(output_ptr + output_offset, acc.to(output_ptr.dtype.element_ty), mask=in_range)


def phase_offsets(
    kernel_size: int, dilation: int, pad_before: int, stride: int, input_dilation: int = 1
) -> list[list[int]]:
    """Per stride phase of one dim, the kernel offsets the fold kernel visits, by its formulas
    (``first``, ``count``, ``KERNEL_STEP``): what ``tests/test_kernels_tiles.py`` checks against
    every offset that reaches a position of that phase.

    Example:
        >>> phase_offsets(3, 1, 1, 2)  # kernel 3, padding 1, stride 2: 2 + 1 of 3
        [[1], [0, 2]]
    """
    phase_step = stride // math.gcd(input_dilation, stride)
    kernel_step = stride // math.gcd(dilation, stride)
    offsets = []
    for phase in range(phase_step):
        residue = phase * input_dilation + pad_before
        reaching = [r for r in range(kernel_step) if (residue - r * dilation) % stride == 0]
        first = reaching[0] if reaching else kernel_step
        count = -(-(kernel_size - first) // kernel_step) if first < kernel_step else 0
        offsets.append([first + j * kernel_step for j in range(count)])
    return offsets


@_launch.plan_cache
def _plan(
    columns_shape, columns_strides, output_shape, dtype, window, input_dilation, out_size, flip
):  # fmt: skip
    """The :class:`~unfoldconv.kernels._launch.Launcher` of one fold into a contiguous output
    (``None``: nothing to write), per columns shape and strides, output shape, dtype, window,
    input dilation and window positions ``out_size``."""
    kernel_size, dilation, pad_before, stride = window
    n, c, *input_size = output_shape
    num_rows = n * c
    if num_rows == 0 or math.prod(input_size) == 0:
        return None
    phase_step = tuple(s // math.gcd(i, s) for i, s in zip(input_dilation, stride))
    grid_size = tuple(_launch.cdiv(size, p) for size, p in zip(input_size, phase_step))
    blocks = _launch.position_tile(num_rows, grid_size)
    split = blocks["SPLIT"]
    num_phases = math.prod(phase_step)
    grid = (_launch.tile_programs(num_rows, grid_size, blocks) * num_phases, 1, 1)
    index_64 = _launch.sizes_need_int64(
        (columns_shape, columns_strides),
        (output_shape, _launch.row_major_strides(output_shape)),
    )
    tail = (num_rows, *columns_strides)
    named = {
        "CHANNELS": c,
        "INPUT_SIZE": tuple(input_size),
        "OUT_SIZE": tuple(out_size),
        "KERNEL_SIZE": tuple(kernel_size),
        "DILATION": tuple(dilation),
        "STRIDE": tuple(stride),
        "PAD_BEFORE": tuple(pad_before),
        "INPUT_DILATION": tuple(input_dilation),
        "PHASE_STEP": phase_step,
        "KERNEL_STEP": tuple(s // math.gcd(dil, s) for dil, s in zip(dilation, stride)),
        "GRID_STEP": tuple(i // math.gcd(i, s) for i, s in zip(input_dilation, stride)),
        "BLOCK_STEP": tuple(dil // math.gcd(dil, s) for dil, s in zip(dilation, stride)),
        "GRID_SIZE": grid_size,
        "NUM_PHASES": num_phases,
        "INPUT_STEP": _launch.row_major_strides(input_size),
        "OUT_STEP": _launch.row_major_strides(out_size),
        "KERNEL_STRIDES": _launch.row_major_strides(kernel_size),
        "INPUT_NUMEL": math.prod(input_size),
        "KERNEL_NUMEL": math.prod(kernel_size),
        "OUTER_NUMEL": math.prod(grid_size[:split]),
        "INNER_NUMEL": math.prod(grid_size[split:]),
        "D": len(kernel_size),
        "SPLIT": split,
        "FLIP": bool(flip),
        "INDEX_64": index_64,
        "ACCUMULATOR": _ACCUMULATOR[dtype],
        "BLOCK_R": blocks["BLOCK_R"],
        "BLOCK_O": blocks["BLOCK_O"],
        "BLOCK_W": blocks["BLOCK_W"],
        **_launch.OPTIONS,
    }
    return _launch.Launcher(_fold_kernel, grid, 2, tail, named)


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
    """Fill the contiguous ``output`` ``(N, C, *spatial)`` from ``columns`` ``(N, C * K, L)``
    (any strides); ``out_size`` holds the window positions per dim (``L = prod(out_size)``),
    the other arguments are d-tuples as in :func:`unfoldconv.kernels._unfold.launch`."""
    plan = _plan(
        tuple(columns.shape),
        columns.stride(),
        tuple(output.shape),
        columns.dtype,
        (tuple(kernel_size), tuple(dilation), tuple(pad_before), tuple(stride)),
        tuple(input_dilation),
        tuple(out_size),
        bool(flip),
    )
    if plan is not None:
        plan(columns, output)


@_launch.plan_cache
def _geometry_plan(
    columns_shape, columns_strides, dtype, input_size, geometry: Geometry, input_dilation
):  # fmt: skip
    """``(output shape, launcher)`` of :func:`fold`, cached per columns shape, strides, dtype,
    output size, geometry and input dilation."""
    n = columns_shape[0]
    channels = columns_shape[1] // geometry.kernel_numel
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
    output_shape = (n, channels, *input_size)
    launcher = _plan(
        columns_shape,
        columns_strides,
        output_shape,
        dtype,
        window,
        input_dilation,
        out_size,
        geometry.flip,
    )
    return output_shape, launcher


def fold(
    columns: torch.Tensor,
    input_size: Sequence[int],
    geometry: Geometry,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C * K, L) -> (N, C, *input_size)``; see :func:`unfoldconv.kernels.fold`."""
    shape, launcher = _geometry_plan(
        tuple(columns.shape),
        columns.stride(),
        columns.dtype,
        tuple(input_size),
        geometry,
        None if input_dilation is None else tuple(input_dilation),
    )
    output = columns.new_empty(shape)  # every element is written once
    if launcher is not None:
        launcher(columns, output)
    return output

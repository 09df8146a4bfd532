"""The engine: one strided gather (unfold) and its adjoint, a fixed-order slice sum (fold).

Shapes (``d`` spatial dims, ``K = prod(kernel_size)``, ``L = prod(out)``)::

    gather:  (N, C, *spatial) -> (N, C * K, L)
    scatter: (N, C * K, L)    -> (N, C, *spatial)

``gather`` builds a *view* of the (padded) input with axes ``(N, C, *kernel, *out)`` from
``Tensor.unfold`` and slicing alone, and copies it once into the output: no index tensors, no
one-hot convolution, any strides in (channels_last, non-contiguous, expanded).

``scatter`` is its adjoint: for each of the K kernel offsets, in row-major order, it adds the
matching ``(N, C, *out)`` slice of the columns into a strided slice of the output. Offsets that
would land in the padding are clipped per dim, so no padded buffer is built. The order is fixed
and there are no atomics, so the result is bit-identical from run to run on every device, and
every index is torch's own int64 tensor arithmetic: no size limit of our own.

``Unfold`` and ``Fold`` are autograd functions whose backward is the other one, so gradients of
every order exist.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from unfoldconv._args import Geometry


def _padded(input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """``input`` with zero padding ``geometry.padding`` (no copy when there is none)."""
    if not any(lo or hi for lo, hi in geometry.padding):
        return input
    n, c, *spatial = input.shape
    sizes = [size + lo + hi for size, (lo, hi) in zip(spatial, geometry.padding)]
    padded = input.new_zeros((n, c, *sizes))
    interior = tuple(slice(lo, lo + size) for size, (lo, _) in zip(spatial, geometry.padding))
    padded[(..., *interior)] = input
    return padded


def window_view(input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """A view ``(N, C, *kernel, *out)`` of the padded ``input`` (no copy beyond the padding)."""
    d = geometry.dim
    view = _padded(input, geometry)
    for axis, (k, dil, s) in enumerate(
        zip(geometry.kernel_size, geometry.dilation, geometry.stride)
    ):
        # (..., size_i, ...) -> (..., out_i, ..., span_i): windows of the dilated kernel's span
        view = view.unfold(2 + axis, dil * (k - 1) + 1, s)
    if any(dil > 1 for dil in geometry.dilation):
        view = view[(..., *(slice(None, None, dil) for dil in geometry.dilation))]
    # (N, C, *out, *kernel) -> (N, C, *kernel, *out)
    order = (0, 1, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))
    return view.permute(order)


def _kernel_offsets(geometry: Geometry):
    return itertools.product(*(range(k) for k in geometry.kernel_size))


def _copy_windows(columns: torch.Tensor, view: torch.Tensor, geometry: Geometry) -> None:
    """``columns (N, C, *kernel, *out) <- view`` with the kernel offsets reversed if ``flip``."""
    if not geometry.flip:
        columns.copy_(view)
        return
    # Reversed kernel offsets cannot be a view (no negative strides): copy offset by offset
    # into the reversed position; every element is still written exactly once.
    for offset in _kernel_offsets(geometry):
        reversed_offset = tuple(k - 1 - i for i, k in zip(offset, geometry.kernel_size))
        columns[(slice(None), slice(None), *reversed_offset)].copy_(
            view[(slice(None), slice(None), *offset)]
        )


def _first_dim_plan(geometry: Geometry) -> dict[int, list[tuple[int, int]]]:
    """Kernel offsets of spatial dim 0 grouped by stride phase: ``phase -> [(offset, row)]``.

    Offset ``k`` of dim 0 reads padded rows ``k * dilation + i * stride``, i.e. rows
    ``row + i`` of the phase ``(k * dilation) % stride`` sub-grid, ``row = (k * dilation) //
    stride``: within one phase, a window is a run of consecutive rows.
    """
    plan: dict[int, list[tuple[int, int]]] = {}
    for k in range(geometry.kernel_size[0]):
        shift = k * geometry.dilation[0]
        plan.setdefault(shift % geometry.stride[0], []).append((k, shift // geometry.stride[0]))
    return plan


def _inner_geometry(geometry: Geometry, padded: bool) -> Geometry:
    """The window of spatial dims 1.. only (dim 0: kernel 1, stride 1, no dilation, no padding).

    ``padded``: the input of this window is already zero padded (drop the padding of dims 1..).
    """
    padding = ((0, 0),) * (geometry.dim - 1) if padded else geometry.padding[1:]
    return Geometry(
        kernel_size=(1, *geometry.kernel_size[1:]),
        dilation=(1, *geometry.dilation[1:]),
        padding=((0, 0), *padding),
        stride=(1, *geometry.stride[1:]),
        flip=geometry.flip,
    )


def choose_path(input_size: Sequence[int], geometry: Geometry, batch_channels: int) -> str:
    """Which of the three gather/scatter strategies suits this shape.

    - ``"direct"``: one copy of the strided window view. Rows of ``out[-1]`` elements.
    - ``"two-stage"``: dims 1.. gathered first (short rows over about ``stride[0] /
      kernel[0]`` of the data), then each kernel row of dim 0 moved as one contiguous run.
    - ``"batch-inner"``: the input transposed to ``(*spatial, N*C)`` (input-sized), the gather
      done with rows of ``N*C`` elements, and the columns transposed back with torch's blocked
      2-d transpose.

    torch copies rows shorter than a few cache lines at a fraction of its bandwidth, so the
    direct path is best for long rows and the others for short ones.
    """
    out_size = geometry.output_size(input_size)
    short_rows = out_size[-1] < 32 or geometry.stride[-1] > 1
    if not short_rows or math.prod(out_size) < 16:
        return "direct"
    if batch_channels >= BATCH_INNER_MIN:
        return "batch-inner"
    if geometry.dim >= 2 and geometry.kernel_size[0] > geometry.stride[0]:
        return "two-stage"
    return "direct"


BATCH_INNER_MIN = 256  # N*C from which rows of N*C elements beat the other paths


def _gather_two_stage(input: torch.Tensor, geometry: Geometry, columns: torch.Tensor) -> None:
    """``columns (N, C, *kernel, *out)`` from dims 1.. gathered first, then runs along dim 0."""
    padded = _padded(input, geometry)
    inner = _inner_geometry(geometry, padded=True)
    k0, out0 = geometry.kernel_size[0], geometry.output_size(input.shape[2:])[0]
    for phase, offsets in _first_dim_plan(geometry).items():
        rows = max(row for _, row in offsets) + out0
        sub_grid = padded[:, :, phase :: geometry.stride[0]][:, :, :rows]  # (N, C, rows, ...)
        view = window_view(sub_grid, inner)  # (N, C, 1, *kernel[1:], rows, *out[1:])
        stage = sub_grid.new_empty(view.shape)
        _copy_windows(stage, view, inner)
        stage = stage[:, :, 0]  # drop the unit kernel axis of dim 0
        row_axis = 2 + geometry.dim - 1
        for k, row in offsets:
            target = k0 - 1 - k if geometry.flip else k
            columns[:, :, target].copy_(stage.narrow(row_axis, row, out0))


def _batch_inner(tensor: torch.Tensor) -> torch.Tensor:
    """``(N, C, *spatial) -> (*spatial, N*C)``, contiguous (a blocked 2-d transpose)."""
    n, c, *spatial = tensor.shape
    flat = tensor.reshape(n * c, math.prod(spatial))  # (N*C, S)
    return flat.t().contiguous().view(*spatial, n * c)  # (S, N*C)


def _gather_batch_inner(input: torch.Tensor, geometry: Geometry, columns: torch.Tensor) -> None:
    """``columns (N, C, *kernel, *out)`` gathered with rows of ``N*C`` elements."""
    n, c, *input_size = input.shape
    moved = _batch_inner(input)  # (*spatial, NC)
    if any(lo or hi for lo, hi in geometry.padding):
        padded_size = [size + lo + hi for size, (lo, hi) in zip(input_size, geometry.padding)]
        padded = moved.new_zeros((*padded_size, n * c))
        interior = tuple(
            slice(lo, lo + size) for size, (lo, _) in zip(input_size, geometry.padding)
        )
        padded[interior] = moved
        moved = padded
    unpadded = geometry._replace(padding=((0, 0),) * geometry.dim)
    # the window view wants (N, C, *spatial) axes: (*spatial, NC) seen as (NC, 1, *spatial)
    view = window_view(moved.movedim(-1, 0).unsqueeze(1), unpadded)  # (NC, 1, *kernel, *out)
    gathered = moved.new_empty((*view.shape[2:], n * c))  # (*kernel, *out, NC)
    _copy_windows(gathered.movedim(-1, 0).unsqueeze(1), view, geometry)
    # (K * L, NC) -> (NC, K * L): blocked 2-d transpose straight into the columns
    columns.view(n * c, -1).copy_(gathered.view(-1, n * c).t())


def _scatter_batch_inner(
    blocks: torch.Tensor, input_size: Sequence[int], geometry: Geometry
) -> torch.Tensor:
    """Fold ``blocks (N, C, *kernel, *out)`` into ``(N, C, *input_size)`` with rows of ``N*C``."""
    n, c = blocks.shape[:2]
    moved = _batch_inner(blocks)  # (*kernel, *out, NC)
    summed = blocks.new_zeros((*input_size, n * c))
    # the per-offset sum wants (N, C, ...) axes: (..., NC) seen as (NC, 1, ...)
    _accumulate(summed.movedim(-1, 0).unsqueeze(1), moved.movedim(-1, 0).unsqueeze(1), geometry)
    output = blocks.new_empty((n, c, *input_size))
    output.view(n * c, -1).copy_(summed.view(-1, n * c).t())  # blocked 2-d transpose
    return output


def gather(
    input: torch.Tensor, geometry: Geometry, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Unfold ``(N, C, *spatial)`` into ``(N, C * K, L)`` by copying a strided view.

    ``out``, if given, is a contiguous tensor of ``N * C * K * L`` elements that receives the
    columns (a reusable workspace); the result is then a view of it.
    """
    n, c, *input_size = input.shape
    out_size = geometry.output_size(input_size)
    shape = (n, c, *geometry.kernel_size, *out_size)
    columns = input.new_empty(shape) if out is None else out.view(shape)
    path = choose_path(input_size, geometry, n * c)
    if path == "batch-inner":
        _gather_batch_inner(input, geometry, columns)
    elif path == "two-stage":
        _gather_two_stage(input, geometry, columns)
    else:
        _copy_windows(columns, window_view(input, geometry), geometry)
    return columns.view(n, c * geometry.kernel_numel, math.prod(out_size))


def _offset_slices(
    offset: Sequence[int], input_size: Sequence[int], out_size: Sequence[int], geometry: Geometry
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """For one kernel offset: (slices into ``*out`` of the columns, slices into ``*spatial``).

    Only window positions that land inside the unpadded input are kept; ``None`` when none do.
    """
    column_slices, target_slices = [], []
    for k_idx, size, n_out, (lo, _), dil, s, k in zip(
        offset,
        input_size,
        out_size,
        geometry.padding,
        geometry.dilation,
        geometry.stride,
        geometry.kernel_size,
    ):
        shift = (k - 1 - k_idx if geometry.flip else k_idx) * dil - lo
        # window position o reads input index o * s + shift; keep 0 <= o * s + shift < size
        first = max(0, (-shift + s - 1) // s)
        last = min(n_out - 1, (size - 1 - shift) // s)
        if last < first:
            return None
        column_slices.append(slice(first, last + 1))
        start = first * s + shift
        target_slices.append(slice(start, start + (last - first) * s + 1, s))
    return tuple(column_slices), tuple(target_slices)


def _accumulate(output: torch.Tensor, blocks: torch.Tensor, geometry: Geometry) -> None:
    """``output (N, C, *spatial) += blocks (N, C, *kernel, *out)``, offset by offset."""
    input_size = output.shape[2:]
    out_size = blocks.shape[2 + geometry.dim :]
    for offset in _kernel_offsets(geometry):
        slices = _offset_slices(offset, input_size, out_size, geometry)
        if slices is None:
            continue
        column_slices, target_slices = slices
        # += on an indexed tensor would copy the slice back; add_ writes in place
        output[(..., *target_slices)].add_(
            blocks[(slice(None), slice(None), *offset, *column_slices)]
        )


def _scatter_two_stage(blocks: torch.Tensor, output: torch.Tensor, geometry: Geometry) -> None:
    """Adjoint of :func:`_gather_two_stage`: runs along dim 0 summed first, then dims 1.."""
    n, c, *input_size = output.shape
    k0, s0, (lo0, _) = geometry.kernel_size[0], geometry.stride[0], geometry.padding[0]
    out_size = geometry.output_size(input_size)
    inner = _inner_geometry(geometry, padded=False)
    row_axis = 2 + geometry.dim - 1
    for phase, offsets in _first_dim_plan(geometry).items():
        rows = max(row for _, row in offsets) + out_size[0]
        stage = blocks.new_zeros((n, c, *geometry.kernel_size[1:], rows, *out_size[1:]))
        for k, row in offsets:
            source = k0 - 1 - k if geometry.flip else k
            stage.narrow(row_axis, row, out_size[0]).add_(blocks[:, :, source])
        # stage row r lands on output row phase + r * s0 - lo0; keep those inside the output
        first = max(0, (lo0 - phase + s0 - 1) // s0)
        last = min(rows - 1, (input_size[0] - 1 + lo0 - phase) // s0)
        if last < first:
            continue
        start = phase + first * s0 - lo0
        target = output[:, :, start : start + (last - first) * s0 + 1 : s0]
        stage = stage.narrow(row_axis, first, last - first + 1).unsqueeze(2)  # unit kernel dim 0
        _accumulate(target, stage, inner)


def scatter(columns: torch.Tensor, input_size: Sequence[int], geometry: Geometry) -> torch.Tensor:
    """Fold ``(N, C * K, L)`` into ``(N, C, *input_size)``, summing overlaps in a fixed order."""
    n = columns.shape[0]
    c = columns.shape[1] // geometry.kernel_numel
    out_size = geometry.output_size(input_size)
    blocks = columns.reshape(n, c, *geometry.kernel_size, *out_size)  # (N, C, *kernel, *out)
    path = choose_path(input_size, geometry, n * c)
    if path == "batch-inner":
        return _scatter_batch_inner(blocks, input_size, geometry)
    output = columns.new_zeros((n, c, *input_size))
    if path == "two-stage":
        _scatter_two_stage(blocks, output, geometry)
    else:
        _accumulate(output, blocks, geometry)
    return output


class Unfold(torch.autograd.Function):
    """``gather`` with ``scatter`` as its backward (and vice versa, to any order)."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        ctx.geometry = geometry
        ctx.input_size = tuple(input.shape[2:])
        return gather(input, geometry)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return Fold.apply(grad_output, ctx.input_size, ctx.geometry), None


class Fold(torch.autograd.Function):
    """``scatter`` with ``gather`` as its backward (and vice versa, to any order)."""

    @staticmethod
    def forward(
        ctx, columns: torch.Tensor, input_size: tuple[int, ...], geometry: Geometry
    ) -> torch.Tensor:
        ctx.geometry = geometry
        return scatter(columns, input_size, geometry)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return Unfold.apply(grad_output, ctx.geometry), None, None

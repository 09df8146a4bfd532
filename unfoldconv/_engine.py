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

``Im2Col`` (gather) and ``Col2Im`` (scatter) are the autograd functions, called through
``im2col`` and ``col2im``: the backward of each is
the other, so gradients of every order exist; they also carry the ``torch.func`` rules (``vmap``
and the forward-mode ``jvp``), so every op built on them works under ``vmap``, ``grad``,
``jacrev``, ``jvp`` and ``functional_call``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import torch

from unfoldconv import _cpu_fold, kernels
from unfoldconv._backend import _functorch_wrapped, use_triton
from unfoldconv._geometry import Geometry


def padded_shape(spatial: Sequence[int], geometry: Geometry) -> tuple[int, ...]:
    """The spatial size of the zero-padded input."""
    return tuple(size + lo + hi for size, (lo, hi) in zip(spatial, geometry.padding))


def _padded(input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """``input`` with zero padding ``geometry.padding`` (no copy when there is none).

    Only the border is zeroed: the interior is written once, by the copy of ``input``.
    """
    if not any(lo or hi for lo, hi in geometry.padding):
        return input
    n, c, *spatial = input.shape
    padded = input.new_empty((n, c, *padded_shape(spatial, geometry)))
    for axis, (size, (lo, hi)) in enumerate(zip(spatial, geometry.padding)):
        # the border slabs along this dim (the full extent of the other dims)
        if lo:
            padded.narrow(2 + axis, 0, lo).zero_()
        if hi:
            padded.narrow(2 + axis, lo + size, hi).zero_()
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


def gather(
    input: torch.Tensor, geometry: Geometry, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Unfold ``(N, C, *spatial)`` into ``(N, C * K, L)``: one copy of a strided view.

    ``out``, if given, is a contiguous tensor of ``N * C * K * L`` elements that receives the
    columns (a reusable workspace); the result is then a view of it.
    """
    if use_triton(input) and kernels.supports(input.dtype):
        return kernels.unfold(input, geometry, out)
    n, c, *input_size = input.shape
    out_size = geometry.output_size(input_size)
    shape = (n, c, *geometry.kernel_size, *out_size)
    flat_shape = (n, c * geometry.kernel_numel, math.prod(out_size))
    # a fresh result is allocated in its returned shape, not returned as a view: autograd
    # forbids in-place ops (nn.ReLU(inplace=True)) on a custom Function's view outputs
    columns = input.new_empty(flat_shape) if out is None else out.view(flat_shape)
    _copy_windows(columns.view(shape), window_view(input, geometry), geometry)
    return columns


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


def scatter(
    columns: torch.Tensor,
    input_size: Sequence[int],
    geometry: Geometry,
    compiled: bool = True,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fold ``(N, C * K, L)`` into ``(N, C, *input_size)``, summing overlaps in a fixed order.

    ``compiled=False`` keeps the CPU fold on the torch route even where the compiled one
    (:mod:`unfoldconv._cpu_fold`) would run: the result is the same, bit for bit. ``out``, if
    given, is an ``(N, C, *input_size)`` tensor (any strides) that the fold *adds into* and
    returns, instead of a fresh zero-filled one (the chunk loop's slabs, which overlap).
    """
    folded = None
    if use_triton(columns) and kernels.supports(columns.dtype):
        folded = kernels.fold(columns, input_size, geometry)
    elif compiled and _cpu_fold.wanted(columns, input_size, geometry):
        folded = _cpu_fold.fold(columns, input_size, geometry)
    if folded is not None:
        return folded if out is None else out.add_(folded)
    n = columns.shape[0]
    c = columns.shape[1] // geometry.kernel_numel
    out_size = geometry.output_size(input_size)
    blocks = columns.reshape(n, c, *geometry.kernel_size, *out_size)  # (N, C, *kernel, *out)
    output = columns.new_zeros((n, c, *input_size)) if out is None else out
    _add_offsets(output, blocks, input_size, out_size, geometry, lead=2)
    return output


def _add_offsets(
    output: torch.Tensor,
    blocks: torch.Tensor,
    input_size: Sequence[int],
    out_size: Sequence[int],
    geometry: Geometry,
    lead: int,
) -> None:
    """``output (*lead, *input_size, *tail) +=`` each kernel offset's block of ``blocks (*lead,
    *kernel, *out, *tail)`` (``lead`` leading dims, the rest trailing), offset by offset in
    row-major order (the fixed order of the fold).

    Each offset's two slices are ``as_strided`` views planned once per shape and strides
    (:func:`_offset_views`): slicing ``2 + 2d`` axes by indexing costs about 20 us of Python
    per offset, 0.6 ms per 3x3x3 fold; the views cost about 2 us. Under ``torch.compile`` and
    functorch transforms the plain indexing runs (no ``as_strided`` in traced graphs).

    Measured and left out: sharing chunks of rows between Python threads, each op under
    torch's grain size (no parallel region to wait for when another process holds a core): a
    lone fold beside one busy process ran 5-20 ms instead of 80, but quiet folds were 2-4x
    slower (each small op hands the GIL over), and whole conv layers showed no gain loaded.
    """
    if indexing_needed(output, blocks):
        every = (slice(None),) * lead
        for offset in _kernel_offsets(geometry):
            slices = _offset_slices(offset, input_size, out_size, geometry)
            if slices is None:
                continue
            column_slices, target_slices = slices
            # += on an indexed tensor would copy the slice back; add_ writes in place
            output[(*every, *target_slices)].add_(blocks[(*every, *offset, *column_slices)])
        return
    views = _offset_views(
        tuple(input_size),
        geometry,
        tuple(output.shape),
        output.stride(),
        blocks.stride(),
        lead,
    )
    output_base, blocks_base = output.storage_offset(), blocks.storage_offset()
    for size, output_stride, output_offset, blocks_stride, blocks_offset in views:
        output.as_strided(size, output_stride, output_base + output_offset).add_(
            blocks.as_strided(size, blocks_stride, blocks_base + blocks_offset)
        )


def indexing_needed(output: torch.Tensor, blocks: torch.Tensor) -> bool:
    """Whether :func:`_add_offsets` slices by indexing rather than ``as_strided`` views: while
    ``torch.compile`` traces and inside functorch transforms."""
    return torch.compiler.is_compiling() or _functorch_wrapped(output) or _functorch_wrapped(blocks)


@functools.lru_cache(maxsize=1024)
def _offset_views(
    input_size: tuple[int, ...],
    geometry: Geometry,
    output_shape: tuple[int, ...],
    output_strides: tuple[int, ...],
    blocks_strides: tuple[int, ...],
    lead: int,
) -> tuple[tuple, ...]:
    """For :func:`_add_offsets`: per kernel offset that reaches the input, ``(size, output
    stride, output offset, blocks stride, blocks offset)`` of its two slices, the offsets
    relative to each tensor's storage offset."""
    d = geometry.dim
    out_size = geometry.output_size(input_size)
    lead_sizes, tail_sizes = output_shape[:lead], output_shape[lead + d :]
    output_lead, output_spatial = output_strides[:lead], output_strides[lead : lead + d]
    output_tail = output_strides[lead + d :]
    blocks_lead, blocks_kernel = blocks_strides[:lead], blocks_strides[lead : lead + d]
    blocks_spatial, blocks_tail = (
        blocks_strides[lead + d : lead + 2 * d],
        blocks_strides[lead + 2 * d :],
    )
    views = []
    for offset in _kernel_offsets(geometry):
        slices = _offset_slices(offset, input_size, out_size, geometry)
        if slices is None:
            continue
        column_slices, target_slices = slices
        size = (*lead_sizes, *(cut.stop - cut.start for cut in column_slices), *tail_sizes)
        output_stride = (
            *output_lead,
            *(stride * cut.step for stride, cut in zip(output_spatial, target_slices)),
            *output_tail,
        )
        output_offset = sum(
            cut.start * stride for cut, stride in zip(target_slices, output_spatial)
        )
        blocks_offset = sum(k * stride for k, stride in zip(offset, blocks_kernel)) + sum(
            cut.start * stride for cut, stride in zip(column_slices, blocks_spatial)
        )
        views.append(
            (
                size,
                output_stride,
                output_offset,
                (*blocks_lead, *blocks_spatial, *blocks_tail),
                blocks_offset,
            )
        )
    return tuple(views)


def _moved_padded(input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """``(N, C, *spatial)`` -> ``(C, *padded, N)``: the samples moved innermost, zero padded.

    Padded first where the rows are long, then moved by one 2-d transpose ``(N, rest) ->
    (rest, N)`` (torch's blocked transpose; a permuted ``copy_`` writes across pages).
    """
    n, c, *spatial = input.shape
    padded = _padded(input, geometry).reshape(n, -1)  # (N, C * prod(padded))
    moved = input.new_empty((c, *padded_shape(spatial, geometry), n))
    moved.view(-1, n).copy_(padded.t())
    return moved


def gather_samples_last(
    input: torch.Tensor, geometry: Geometry, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Unfold ``(N, C, *spatial)`` into ``(C * K, L, N)``: the columns with the samples innermost.

    The layout of the chunked convolution: one GEMM ``(C_out, C*K) @ (C*K, L*N)`` per chunk,
    and the copy runs along ``N`` (and along the last output dim too with stride 1) instead of
    the last output dim alone (8-32 elements on typical shapes). The input is first moved to
    ``(C, *padded, N)`` (:func:`_moved_padded`, an input-sized copy that also pads); ``out`` as
    in :func:`gather`. Any route: it is made of torch ops only.
    """
    n, c, *input_size = input.shape
    d = geometry.dim
    out_size = geometry.output_size(input_size)
    view = _moved_padded(input, geometry)  # (C, *padded, N)
    for axis, (k, dil, s) in enumerate(
        zip(geometry.kernel_size, geometry.dilation, geometry.stride)
    ):
        # (..., size_i, ...) -> (..., out_i, ..., span_i)
        view = view.unfold(1 + axis, dil * (k - 1) + 1, s)
    if any(dil > 1 for dil in geometry.dilation):
        view = view[(..., *(slice(None, None, dil) for dil in geometry.dilation))]
    # (C, *out, N, *kernel) -> (C, *kernel, *out, N)
    view = view.permute(0, *range(2 + d, 2 + 2 * d), *range(1, 1 + d), 1 + d)
    shape = (c, *geometry.kernel_size, *out_size, n)
    columns = input.new_empty(shape) if out is None else out.view(shape)
    if not geometry.flip:
        columns.copy_(view)
    else:  # reversed kernel offsets: offset by offset, as _copy_windows
        for offset in _kernel_offsets(geometry):
            reversed_offset = tuple(k - 1 - i for i, k in zip(offset, geometry.kernel_size))
            columns[(slice(None), *reversed_offset)].copy_(view[(slice(None), *offset)])
    return columns.view(c * geometry.kernel_numel, math.prod(out_size), n)


def scatter_samples_last(
    columns: torch.Tensor, input_size: Sequence[int], geometry: Geometry
) -> torch.Tensor:
    """Fold ``(C * K, L, N)`` columns (samples innermost) into ``(C, *input_size, N)``.

    The adjoint of :func:`gather_samples_last` before its move: the same fixed-order sum as
    :func:`scatter` (bit-identical to it), with each ``add_`` running along ``N`` too.
    """
    rows, _, n = columns.shape
    c = rows // geometry.kernel_numel
    out_size = geometry.output_size(input_size)
    blocks = columns.view(c, *geometry.kernel_size, *out_size, n)  # (C, *kernel, *out, N)
    output = columns.new_zeros((c, *input_size, n))
    _add_offsets(output, blocks, input_size, out_size, geometry, lead=1)
    return output


def apply_function(function: type[torch.autograd.Function], *args):
    """``function.apply(*args)`` for an autograd function in ``setup_context`` form, minus the
    per-call ``inspect.signature`` binding of ``Function.apply`` (about 25 us, half the time of
    a small conv).

    Outside ``torch.func`` transforms ``Function.apply`` only binds the arguments to
    ``forward``'s signature, to fill in defaults for ``setup_context``; every caller here passes
    all arguments positionally to a ``forward`` without defaults, so the binding changes
    nothing and the C++ ``apply`` (forward, ``setup_context``, the graph node) is called
    directly. Inside transforms ``Function.apply`` runs as it is (it dispatches to functorch).
    """
    if torch._C._are_functorch_transforms_active():
        return function.apply(*args)
    return super(torch.autograd.Function, function).apply(*args)


def im2col(input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Differentiable ``gather``: :class:`Im2Col`; while Dynamo traces, ``gather`` itself.

    Under ``torch.compile`` the torch route's gather is views and one copy, which autograd
    differentiates on its own: the backward graph gets torch's ``unfold_backward`` instead of
    the K slice-adds of our fold, and compiles in about half the time (the README's small
    model: 2.1-3.1x the native model's compile time before, about 1.6x after).
    """
    if torch.compiler.is_compiling():
        return gather(input, geometry)
    return apply_function(Im2Col, input, geometry)


def col2im(columns: torch.Tensor, input_size: tuple[int, ...], geometry: Geometry) -> torch.Tensor:
    """Differentiable ``scatter``: :class:`Col2Im`, or its jvp-free twin while Dynamo traces."""
    if torch.compiler.is_compiling():
        return _TracedCol2Im.apply(columns, input_size, geometry)
    return apply_function(Col2Im, columns, input_size, geometry)


def _merge_vmap_dim(tensor: torch.Tensor, vmap_dim: int) -> tuple[torch.Tensor, int]:
    """``tensor`` with ``torch.func.vmap``'s batch dim moved to the front and merged with N.

    ``(..., B, ...)`` with ``N`` after the move -> ``(B * N, ...)``; also returns ``B``.
    """
    tensor = tensor.movedim(vmap_dim, 0)  # (B, N, ...)
    return tensor.flatten(0, 1), tensor.shape[0]  # (B * N, ...)


class Im2Col(torch.autograd.Function):
    """``gather`` with ``scatter`` as its backward (and vice versa, to any order).

    Works under ``torch.func``: ``vmap`` merges the vmapped dim into the batch (the op is per
    sample), and the forward-mode derivative (``jvp``) of this linear op is the op applied to
    the tangent. Call it through :func:`im2col`.
    """

    @staticmethod
    def forward(input: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        return gather(input, geometry)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, geometry = inputs
        ctx.geometry = geometry
        ctx.input_size = tuple(input.shape[2:])

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return col2im(grad_output, ctx.input_size, ctx.geometry), None

    @staticmethod
    def jvp(ctx, input_tangent: torch.Tensor, _geometry_tangent):
        return im2col(input_tangent, ctx.geometry)

    @staticmethod
    def vmap(info, in_dims, input: torch.Tensor, geometry: Geometry):
        if in_dims[0] is None:
            return im2col(input, geometry), None
        batch, vmap_size = _merge_vmap_dim(input, in_dims[0])
        columns = im2col(batch, geometry)  # (B * N, C*K, L)
        return columns.unflatten(0, (vmap_size, -1)), 0  # (B, N, C*K, L)


class Col2Im(torch.autograd.Function):
    """``scatter`` with ``gather`` as its backward (and vice versa, to any order).

    Works under ``torch.func`` as :class:`Im2Col` does. Call it through :func:`col2im`.
    """

    @staticmethod
    def forward(
        columns: torch.Tensor, input_size: tuple[int, ...], geometry: Geometry
    ) -> torch.Tensor:
        return scatter(columns, input_size, geometry)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.input_size, ctx.geometry = inputs

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return im2col(grad_output, ctx.geometry), None, None

    @staticmethod
    def jvp(ctx, columns_tangent: torch.Tensor, _size_tangent, _geometry_tangent):
        return col2im(columns_tangent, ctx.input_size, ctx.geometry)

    @staticmethod
    def vmap(info, in_dims, columns: torch.Tensor, input_size, geometry: Geometry):
        if in_dims[0] is None:
            return col2im(columns, input_size, geometry), None
        batch, vmap_size = _merge_vmap_dim(columns, in_dims[0])
        output = col2im(batch, input_size, geometry)  # (B * N, C, *spatial)
        return output.unflatten(0, (vmap_size, -1)), 0  # (B, N, C, *spatial)


# Dynamo cannot trace an autograd.Function with a custom jvp (it graph-breaks, so
# ``fullgraph=True`` fails): while it traces, the twin below without one runs instead (unfold
# needs none: under Dynamo it is plain ``gather``, see :func:`im2col`).
class _TracedCol2Im(Col2Im):
    jvp = torch.autograd.Function.jvp

"""Position sums of the columns without the columns: separable prefix sums, per stride phase.

Row ``(c, k)`` of the columns holds, at output position ``o``, the padded input at
``o * stride + k * dilation`` (per dim). Its sum over every output position is a sum of the
input over one strided box, and a box sum is separable: sum along the first spatial dim, then
the second, and so on. Along one dim of size ``n``, offset ``k`` reads the input indices
``i = o * s + shift`` (``shift = k * dil - pad_before``, ``0 <= o < out``), which all share the
stride phase ``r = shift mod s``: with ``P_r`` the prefix sums of ``x[r::s]`` along that dim,
the sum is ``P_r[hi] - P_r[lo]`` (indices clamped to the input: zero padding adds nothing). So
each dim costs one pass (the ``s`` phases together cover the tensor once) and then ``k``
differences, and it shrinks that dim from ``n`` to ``k`` entries before the next dim is summed:
the first pass over the input is nearly the whole cost.

The prefix sums are only needed at the window ends, and a conv's windows cover nearly the
whole axis (they miss ``(k - 1) * dil / s`` elements at most): so ``P_r[hi] - P_r[lo]`` is
taken as the phase's total minus its few head and tail slices (or, for a window shorter than
what it misses, as its own sum). One read of the input in all, and no buffer larger than the
result of summing one dim away.
"""

from __future__ import annotations

import torch

from unfoldconv._geometry import Geometry


def window_sums(input: torch.Tensor, geometry: Geometry, dtype: torch.dtype) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C, *kernel)``: each column row summed over output positions.

    Equals ``unfold(input, ...).sum(-1)`` viewed as ``(N, C, *kernel)`` (the kernel offsets
    reversed when ``geometry.flip``), in ``dtype``.
    """
    out_size = geometry.output_size(input.shape[2:])
    sums = input
    for axis in range(geometry.dim):
        sums = _sum_along(sums, 2 + axis, out_size[axis], geometry, axis, dtype)
    if geometry.flip:
        sums = sums.flip(tuple(range(2, 2 + geometry.dim)))
    return sums


def _sum_along(
    x: torch.Tensor, dim: int, out: int, geometry: Geometry, axis: int, dtype: torch.dtype
) -> torch.Tensor:
    """Replace dim ``dim`` (size ``n``) by the ``k`` strided window sums of its offsets."""
    size = x.shape[dim]
    k, dil, stride = geometry.kernel_size[axis], geometry.dilation[axis], geometry.stride[axis]
    before = geometry.padding[axis][0]
    shape = list(x.shape)
    shape[dim] = k
    result = x.new_zeros(shape, dtype=dtype)
    totals = None  # (..., s, ...): the total of every stride phase, from one pass
    for offset in range(k):
        shift = offset * dil - before
        phase = shift % stride
        if phase >= size:
            continue  # every index of this phase lies in the padding
        # the phase's elements x[phase + m * s], m < count; the window takes m in [lo, hi)
        strided = x.narrow(dim, phase, size - phase)[
            (slice(None),) * dim + (slice(None, None, stride),)
        ]
        count = strided.shape[dim]
        first = (shift - phase) // stride
        lo, hi = min(max(first, 0), count), min(max(first + out, 0), count)
        target = result.select(dim, offset)
        if hi - lo <= count - (hi - lo):  # a short window: sum it
            torch.sum(strided.narrow(dim, lo, hi - lo), dim, dtype=dtype, out=target)
            continue
        if totals is None:
            totals = _phase_totals(x, dim, stride, dtype)
        target.copy_(totals.select(dim, phase))  # P[hi] - P[lo] = total - head - tail
        for start, length in ((0, lo), (hi, count - hi)):
            if length:
                target.sub_(strided.narrow(dim, start, length).sum(dim, dtype=dtype))
    return result


def _phase_totals(x: torch.Tensor, dim: int, stride: int, dtype: torch.dtype) -> torch.Tensor:
    """``(..., stride, ...)``: entry ``r`` along ``dim`` sums ``x[r::stride]`` along ``dim``.

    One reduction over the view ``(..., size // s, s, ...)``, plus the last ``size % s``
    elements (a strided slice per phase would be ``s`` slower passes).
    """
    size = x.shape[dim]
    whole, rest = divmod(size, stride)
    if whole == 0:
        shape = list(x.shape)
        shape[dim] = stride
        totals = x.new_zeros(shape, dtype=dtype)
    else:
        totals = x.narrow(dim, 0, whole * stride).unflatten(dim, (whole, stride))
        totals = totals.sum(dim, dtype=dtype)  # (..., s, ...)
    if rest:
        totals.narrow(dim, 0, rest).add_(x.narrow(dim, whole * stride, rest))
    return totals

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
    by_phase: dict[int, list[tuple[int, int]]] = {}  # phase r -> [(offset, first m index)]
    for offset in range(k):
        shift = offset * dil - before
        phase = shift % stride
        by_phase.setdefault(phase, []).append((offset, (shift - phase) // stride))
    for phase, offsets in by_phase.items():
        if phase >= size:
            continue  # every index of this phase lies in the padding
        strided = x.narrow(dim, phase, size - phase)[
            (slice(None),) * dim + (slice(None, None, stride),)
        ]
        count = strided.shape[dim]
        total = None  # P_r[count]: the sum of the whole phase, one pass
        for offset, first in offsets:
            lo, hi = min(max(first, 0), count), min(max(first + out, 0), count)
            target = result.select(dim, offset)
            if hi - lo <= count - (hi - lo):  # a short window: sum it
                torch.sum(strided.narrow(dim, lo, hi - lo), dim, dtype=dtype, out=target)
                continue
            if total is None:
                total = strided.sum(dim, dtype=dtype)
            target.copy_(total)  # P[hi] - P[lo] = total - (the head before lo) - (the tail)
            for start, length in ((0, lo), (hi, count - hi)):
                if length:
                    target.sub_(strided.narrow(dim, start, length).sum(dim, dtype=dtype))
    return result

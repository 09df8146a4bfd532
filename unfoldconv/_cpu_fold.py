"""Fold on the CPU as one compiled serial loop per ``(n, c)`` row, shared out between threads.

Why: the torch route of ``scatter`` is K separate ``add_`` calls, each one OpenMP parallel
region with a static split of the work. When another process shares the cores, every region
waits at its end for a thread the OS has descheduled, K times per fold: measured 2.5-3.5x
``F.fold`` with one busy process beside it. Here each row (one image, one channel) is folded by
a serial numba kernel that releases the GIL; the rows are shared out between the calling thread
and a pool (:func:`unfoldconv._work_sharing.run_rows`), so a descheduled thread costs at most
the one chunk it holds, not a whole pass.

Each row is zeroed, then each kernel offset's block of columns is added in row-major offset
order, the order of the torch route: the result is bit-identical to it.

numba is a dependency of the plain install (on Pythons it has no wheels for yet it is left out);
without it, or for dtypes it does not cover (float16, bfloat16, complex, bool, ...), the torch
route runs. Imported on the first fold that takes this route, not with the package.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import torch

from unfoldconv._backend import _functorch_wrapped, current_backend
from unfoldconv._geometry import Geometry
from unfoldconv._work_sharing import run_rows

#: the dtypes the kernel is compiled for (numba has no float16/bfloat16/complex32; bool's ``+``
#: is not torch's logical or)
DTYPES = frozenset(
    {torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}
)

#: The kernel pays off where the torch route is weakest: strided folds (each ``add_`` writes a
#: strided slice) and small images (each ``add_`` has little work for its parallel region), with
#: more than one kernel offset. Measured (All-CNN-C, batch 32, ``experiments/benchmark.py --only
#: fold``, quiet and ``--load``, fold time / ``F.fold`` time; the torch route in brackets):
#: conv3 0.53 (0.69) quiet, 0.97 (1.13) loaded; conv4 0.48 (0.50), 0.89 (1.07); conv6 0.59
#: (0.67), 1.10 (1.98); conv7 0.56 (0.65), 0.92 (3.11). On stride-1 images of 32x32 and more
#: (conv1, conv2, the 16^3 case) the torch route's vectorised ``add_`` is as fast quiet and
#: stays under ``F.fold`` loaded; with one kernel offset (conv8, 1x1) fold is a single copy and
#: the torch route wins (0.36 vs 1.08 quiet).
SMALL_IMAGE = 256


def numba_available() -> bool:
    """Whether numba imports (a dependency, absent only on Pythons it has no wheels for)."""
    return _kernel() is not None


def wanted(columns: torch.Tensor, input_size: Sequence[int], geometry: Geometry) -> bool:
    """Whether ``scatter`` should fold ``columns`` with the compiled kernel instead of torch."""
    return (
        not torch.compiler.is_compiling()  # first: Dynamo's strict mode bans reading .layout
        and columns.device.type == "cpu"
        and columns.layout == torch.strided
        and columns.dtype in DTYPES
        and not (columns.requires_grad and torch.is_grad_enabled())
        and not _functorch_wrapped(columns)
        and current_backend() != "torch"
        and kernel_pays_off(input_size, geometry)
        and numba_available()
    )


def kernel_pays_off(input_size: Sequence[int], geometry: Geometry) -> bool:
    """The measured switch rule: strided folds and small images, more than one kernel offset
    (see :data:`SMALL_IMAGE`)."""
    return geometry.kernel_numel > 1 and (
        any(s > 1 for s in geometry.stride) or math.prod(input_size) <= SMALL_IMAGE
    )


def fold(columns: torch.Tensor, input_size: Sequence[int], geometry: Geometry) -> torch.Tensor:
    """``scatter`` through the compiled kernel: ``(N, C * K, L)`` -> ``(N, C, *input_size)``."""
    input_size = tuple(input_size)
    n = columns.shape[0]
    c = columns.shape[1] // geometry.kernel_numel
    rows = n * c
    source = columns.detach().reshape(rows, geometry.kernel_numel * columns.shape[2]).contiguous()
    # allocated in the returned shape (a view output of a custom Function forbids in-place ops)
    output = torch.empty((n, c, *input_size), dtype=columns.dtype)
    if output.numel():
        blocks, step = _blocks(input_size, geometry)
        dst = output.view(rows, math.prod(input_size)).numpy()
        kernel, src = _kernel(), source.numpy()
        run_rows(lambda r0, r1: kernel(src, blocks, step, dst, r0, r1), rows, source.numel())
    return output


def _fold_rows(cols, blocks, step, out, r0, r1):  # pragma: no cover (compiled by numba)
    """Rows ``r0:r1``: zero ``out[r]``, then add each block of ``cols[r]`` in table order.

    A block is one kernel offset's run of ``count`` lines of ``length`` columns
    (``src + u * src_step + t``) landing on ``dst + u * dst_step + t * step`` in the image.
    """
    for r in range(r0, r1):
        src = cols[r]
        dst = out[r]
        for x in range(dst.shape[0]):
            dst[x] = 0
        for j in range(blocks.shape[0]):
            a, b, length, count, a_step, b_step = blocks[j]
            for u in range(count):
                a_u = a + u * a_step
                b_u = b + u * b_step
                if step == 1:  # a separate loop the compiler vectorises
                    for t in range(length):
                        dst[b_u + t] += src[a_u + t]
                else:
                    for t in range(length):
                        dst[b_u + t * step] += src[a_u + t]


@functools.cache
def _kernel() -> Callable | None:
    """``_fold_rows`` compiled by numba (GIL released, cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(nogil=True, cache=True)(_fold_rows)


def _dim_range(
    k_idx: int, size: int, n_out: int, lo: int, dil: int, s: int, k: int, flip: bool
) -> tuple[int, int, int] | None:
    """One dim of one kernel offset: (first window, window count, first image index) or None.

    The same clipping as the torch route: window ``o`` reads image index ``o * s + shift``;
    only ``0 <= o * s + shift < size`` is kept.
    """
    shift = (k - 1 - k_idx if flip else k_idx) * dil - lo
    first = max(0, (-shift + s - 1) // s)
    last = min(n_out - 1, (size - 1 - shift) // s)
    if last < first:
        return None
    return first, last - first + 1, first * s + shift


@functools.lru_cache(maxsize=256)
def _blocks(input_size: tuple[int, ...], geometry: Geometry):
    """The kernel's block table ``(src, dst, length, count, src_step, dst_step)`` int64 rows,
    in kernel-offset order, over the last two dims (outer dims enumerated), and the last
    dim's stride."""
    import numpy as np  # numba's dependency: only imported once numba is

    out_size = geometry.output_size(input_size)
    d = len(out_size)
    n_windows = math.prod(out_size)
    out_strides = [math.prod(out_size[i + 1 :]) for i in range(d)]
    in_strides = [math.prod(input_size[i + 1 :]) for i in range(d)]
    per_dim = zip(
        input_size,
        out_size,
        (lo for lo, _ in geometry.padding),
        geometry.dilation,
        geometry.stride,
        geometry.kernel_size,
    )
    per_dim = list(per_dim)
    rows = []
    offsets = itertools.product(*(range(k) for k in geometry.kernel_size))
    for k_flat, offset in enumerate(offsets):
        ranges = [_dim_range(i, *dim, geometry.flip) for i, dim in zip(offset, per_dim)]
        if any(r is None for r in ranges):
            continue
        first_last, n_last, start_last = ranges[-1]
        if d >= 2:  # the last two dims are one block: count lines of n_last columns
            first_mid, count, start_mid = ranges[-2]
            src0 = first_mid * out_strides[-2] + first_last
            dst0 = start_mid * in_strides[-2] + start_last
            src_step, dst_step = out_strides[-2], geometry.stride[-2] * in_strides[-2]
            outer = ranges[:-2]
        else:
            count, src0, dst0, src_step, dst_step = 1, first_last, start_last, 0, 0
            outer = []
        outer_positions = [
            [(first + j, start + j * s) for j in range(n)]
            for (first, n, start), s in zip(outer, geometry.stride)
        ]
        for combo in itertools.product(*outer_positions):
            src = k_flat * n_windows + src0
            dst = dst0
            for (o, x), o_stride, x_stride in zip(combo, out_strides, in_strides):
                src += o * o_stride
                dst += x * x_stride
            rows.append((src, dst, n_last, count, src_step, dst_step))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 6), int(geometry.stride[-1])

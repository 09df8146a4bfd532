"""Triton kernels for the engine: one file per op, each the ``@triton.jit`` kernel and its launcher.

- :func:`unfold`: one gather kernel for any ``d`` (``_unfold.py``): zero padding, dilation,
  stride, flipped kernel offsets, an input dilation (the zeros of a transposed convolution,
  never materialised) and any input strides, read in place.
- :func:`fold`: its adjoint in *gather form* (``_fold.py``): every output element sums its own
  contributing columns in the fixed row-major kernel-offset order. No atomics, one pass over
  the output, bit-identical from run to run.
- :func:`unfold_transpose` and its adjoint :func:`unfold_transpose_adjoint`
  (``_unfold_transpose.py``) on the same two kernels.

Importing this package does not import Triton; the launchers do, on first use. The engine
(:mod:`unfoldconv._engine`) is the one caller that chooses between these kernels and the torch
route (:func:`unfoldconv._backend.use_triton` and :func:`supports`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from unfoldconv._geometry import Geometry

#: The dtypes the kernels handle. Everything else (complex, float8, uint16/32/64, ...) takes
#: the pure-torch route on every backend.
SUPPORTED_DTYPES = frozenset(
    {
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.bool,
    }
)


def supports(dtype: torch.dtype) -> bool:
    """Whether the Triton kernels handle ``dtype``.

    True for float16, bfloat16, float32, float64, int8, int16, int32, int64, uint8 and bool;
    False for complex, float8 and the wide unsigned types, which take the torch route.

    Example:
        >>> supports(torch.bfloat16), supports(torch.complex64)
        (True, False)
    """
    return dtype in SUPPORTED_DTYPES


def unfold(
    input: torch.Tensor,
    geometry: Geometry,
    out: torch.Tensor | None = None,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C * K, L)``: what ``unfoldconv._engine.gather`` returns.

    ``out`` (optional) is a contiguous buffer of ``N * C * K * L`` elements of ``input``'s dtype;
    the result is then a view of it. ``input_dilation`` (per dim, default 1) reads ``input`` as
    if ``input_dilation - 1`` zeros stood between neighbouring elements; ``geometry.padding``
    may then be negative (a crop).
    """
    from unfoldconv.kernels import _unfold

    return _unfold.unfold(input, geometry, out, input_dilation)


def fold(
    columns: torch.Tensor,
    input_size: Sequence[int],
    geometry: Geometry,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C * K, L) -> (N, C, *input_size)``: the adjoint of :func:`unfold` (same arguments),
    what ``unfoldconv._engine.scatter`` returns. float16/bfloat16 accumulate in float32."""
    from unfoldconv.kernels import _fold

    return _fold.fold(columns, input_size, geometry, input_dilation)


def unfold_transpose(
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The columns ``(N, C * K, L_out)`` of a transposed convolution, as
    :func:`unfoldconv.unfold_transpose` (batched input, d-tuples), without building the
    stride-dilated input."""
    from unfoldconv.kernels import _unfold_transpose

    return _unfold_transpose.unfold_transpose(
        input, kernel_size, stride, padding, output_padding, dilation, out
    )


def unfold_transpose_adjoint(
    columns: torch.Tensor,
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
) -> torch.Tensor:
    """``(N, C * K, L_out) -> (N, C, *input_size)``: the adjoint (so the backward) of
    :func:`unfold_transpose`."""
    from unfoldconv.kernels import _unfold_transpose

    return _unfold_transpose.unfold_transpose_adjoint(
        columns, input_size, kernel_size, stride, padding, output_padding, dilation
    )

"""``unfold_transpose`` and its adjoint on the unfold and fold kernels: no stride-dilated input.

The columns of a transposed convolution are the unfold, with flipped kernel offsets and stride 1,
of the input dilated by ``stride`` and padded by ``dilation * (kernel_size - 1) - padding`` before
(that + ``output_padding`` after). The kernels take the stride as their ``input_dilation`` and
the padding as it is, negative amounts cropping, so neither the zeros between input elements nor
a padded copy is ever built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from unfoldconv.kernels import _fold, _launch, _unfold


def _transposed_window(
    kernel_size: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """``(stride 1 per dim, (before, after) padding per dim)`` of the equivalent unfold."""
    before = [dil * (k - 1) - p for k, p, dil in zip(kernel_size, padding, dilation)]
    padding_pairs = tuple((b, b + op) for b, op in zip(before, output_padding))
    return (1,) * len(kernel_size), padding_pairs


def unfold_transpose(
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C * K, L_out)``, as :func:`unfoldconv.unfold_transpose`."""
    n, c, *input_size = input.shape
    unit_stride, padding_pairs = _transposed_window(kernel_size, padding, output_padding, dilation)
    out_size = _launch.window_output_size(
        input_size, kernel_size, dilation, padding_pairs, unit_stride, stride
    )
    shape = (n, c * math.prod(kernel_size), math.prod(out_size))
    columns = input.new_empty(shape) if out is None else _launch.workspace(out, shape, input.dtype)
    _unfold.launch(
        input,
        columns,
        kernel_size,
        dilation,
        [lo for lo, _ in padding_pairs],
        unit_stride,
        stride,
        out_size,
        flip=True,
    )
    return columns


def unfold_transpose_adjoint(
    columns: torch.Tensor,
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
) -> torch.Tensor:
    """``(N, C * K, L_out) -> (N, C, *input_size)``: the backward of :func:`unfold_transpose`."""
    n = columns.shape[0]
    channels = columns.shape[1] // math.prod(kernel_size)
    unit_stride, padding_pairs = _transposed_window(kernel_size, padding, output_padding, dilation)
    out_size = _launch.window_output_size(
        input_size, kernel_size, dilation, padding_pairs, unit_stride, stride
    )
    output = columns.new_empty((n, channels, *input_size))  # every element is written once
    _fold.launch(
        columns,
        output,
        kernel_size,
        dilation,
        [lo for lo, _ in padding_pairs],
        unit_stride,
        stride,
        out_size,
        flip=True,
    )
    return output

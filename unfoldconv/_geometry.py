"""Sliding-window geometry: ``Geometry`` and every output-size formula of the package.

Conv, unfold, fold, locally connected and patch grids use :meth:`Geometry.output_size`; the
transposed convolution's size and the ``output_padding`` that reaches a requested size are the
two functions below. No other module writes one of these formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Geometry(NamedTuple):
    """Everything the engine needs to know about a sliding window, as d-tuples.

    ``padding`` holds ``(before, after)`` per spatial dim, so asymmetric ``"same"`` padding and
    the stride-dilated input of a transposed convolution share one code path. ``flip`` reverses
    the kernel offsets (the layout ``unfold_transpose`` needs).
    """

    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    stride: tuple[int, ...]
    flip: bool = False

    @property
    def dim(self) -> int:
        """Number of spatial dims ``d``."""
        return len(self.kernel_size)

    @property
    def kernel_numel(self) -> int:
        """``K = prod(kernel_size)``, the number of kernel offsets."""
        return math.prod(self.kernel_size)

    @property
    def is_padded(self) -> bool:
        """Whether any side of any spatial dim has zero padding."""
        return any(lo or hi for lo, hi in self.padding)

    @property
    def is_non_overlapping(self) -> bool:
        """Windows tile the input: kernel == stride, no dilation, no padding (patches, 1x1)."""
        return (
            self.kernel_size == self.stride
            and all(dil == 1 for dil in self.dilation)
            and not self.is_padded
            and not self.flip
        )

    def output_size(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """Number of window positions along each spatial dim (torch's conv formula)::

        out_i = (size_i + before_i + after_i - dilation_i * (kernel_size_i - 1) - 1)
                // stride_i + 1
        """
        return tuple(
            (size + lo + hi - dil * (k - 1) - 1) // s + 1
            for size, (lo, hi), dil, k, s in zip(
                input_size, self.padding, self.dilation, self.kernel_size, self.stride
            )
        )


def transposed_output_size(
    input_size: Sequence[int],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """Spatial size of a transposed convolution's output (torch's formula)::

    out_i = (size_i - 1) * stride_i - 2 * padding_i + dilation_i * (kernel_size_i - 1)
            + output_padding_i + 1
    """
    return tuple(
        (size - 1) * s - 2 * p + dil * (k - 1) + op + 1
        for size, k, s, p, op, dil in zip(
            input_size, kernel_size, stride, padding, output_padding, dilation
        )
    )


def transposed_size_range(
    input_size: Sequence[int],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> list[tuple[int, int]]:
    """Per dim, the smallest and largest output size ``output_padding < stride`` can reach."""
    smallest = transposed_output_size(
        input_size, kernel_size, stride, padding, (0,) * len(kernel_size), dilation
    )
    return [(low, low + s - 1) for low, s in zip(smallest, stride)]

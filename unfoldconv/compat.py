"""A drop-in for the ``unfoldNd`` package, on unfoldconv's engine.

``import unfoldconv.compat as unfoldNd`` gives ``unfoldNd, UnfoldNd, foldNd, FoldNd,
unfold_transposeNd, UnfoldTransposeNd`` with unfoldNd's signatures and behaviour, including
its ``ValueError`` for an ``output_size`` that is not a tuple in ``foldNd``. Unlike unfoldNd it
works for any number of spatial dims, every dtype of :func:`unfoldconv.unfold`, fold outputs
past 2**24 elements, and its fold is deterministic on CUDA.

Example:
    >>> import unfoldconv.compat as unfoldNd
    >>> unfoldNd.unfoldNd(torch.randn(2, 3, 8, 8, 8), kernel_size=2, stride=2).shape
    torch.Size([2, 24, 64])
"""

from __future__ import annotations

import torch

from unfoldconv.fold import Fold, fold
from unfoldconv.unfold import Unfold, unfold
from unfoldconv.unfold_transpose import UnfoldTranspose, unfold_transpose

__all__ = ["FoldNd", "UnfoldNd", "UnfoldTransposeNd", "foldNd", "unfoldNd", "unfold_transposeNd"]


def unfoldNd(input: torch.Tensor, kernel_size, dilation=1, padding=0, stride=1) -> torch.Tensor:
    """``unfoldNd.unfoldNd``: :func:`unfoldconv.unfold` for ``(N, C, *spatial)`` input."""
    return unfold(input, kernel_size, dilation=dilation, padding=padding, stride=stride)


def foldNd(
    input: torch.Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1
) -> torch.Tensor:
    """``unfoldNd.foldNd``: :func:`unfoldconv.fold`; ``output_size`` must be a tuple.

    Raises:
        ValueError: if ``output_size`` is not a ``tuple`` (its length gives the dimension).
    """
    if not isinstance(output_size, tuple):
        raise ValueError(f"'output_size' must be tuple. Got {type(output_size)}.")
    return fold(input, output_size, kernel_size, dilation=dilation, padding=padding, stride=stride)


def unfold_transposeNd(
    input: torch.Tensor, kernel_size, stride=1, padding=0, output_padding=0, dilation=1
) -> torch.Tensor:
    """``unfoldNd.unfold_transposeNd``: :func:`unfoldconv.unfold_transpose`."""
    return unfold_transpose(input, kernel_size, stride, padding, output_padding, dilation)


class UnfoldNd(Unfold):
    """``unfoldNd.UnfoldNd``: module form of :func:`unfoldNd`."""


class FoldNd(Fold):
    """``unfoldNd.FoldNd``: module form of :func:`foldNd` (``output_size`` must be a tuple)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return foldNd(
            input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride
        )


class UnfoldTransposeNd(UnfoldTranspose):
    """``unfoldNd.UnfoldTransposeNd``: ``forward(input, output_size=None)``."""

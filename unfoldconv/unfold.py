"""``unfold`` (im2col) for any number of spatial dims, and its module ``Unfold``."""

from __future__ import annotations

import torch
from torch import nn

from unfoldconv._args import (
    IntOrTuple,
    Padding,
    check_input_dims,
    check_tensor,
    check_window_fits,
    infer_dim,
    input_dim,
    make_geometry,
)
from unfoldconv._engine import im2col


def unfold(
    input: torch.Tensor,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: Padding = 0,
    stride: IntOrTuple = 1,
) -> torch.Tensor:
    """Extract sliding local blocks (im2col) from an input with any number ``d`` of spatial dims.

    For ``d = 2`` this returns exactly what :func:`torch.nn.functional.unfold` returns (bit for
    bit). It is one strided copy of the padded input; its backward is :func:`unfoldconv.fold`.

    How ``d`` is found: if any size argument is a tuple, ``d`` is its length; with all-int sizes
    every dim after ``(N, C)`` is spatial, ``d = input.dim() - 2``. So a 3-D input to
    ``unfold(x, 3)`` is a *batched 1-d signal* (``F.unfold`` would read it as one unbatched
    image); pass ``kernel_size`` as a tuple to unfold an unbatched ``(C, *spatial)`` input.

    Args:
        input: ``(N, C, *spatial)``, or unbatched ``(C, *spatial)`` when ``d`` comes from a tuple.
            Any dtype torch can copy, any memory layout, ``N = 0`` allowed.
        kernel_size: block size, an int or a d-tuple.
        dilation: spacing between block elements, an int or a d-tuple.
        padding: implicit zero padding on both sides, an int, a d-tuple, ``"valid"`` (none) or
            ``"same"`` (as ``F.conv2d``: stride 1, odd padding element at the end).
        stride: step between blocks, an int or a d-tuple.

    Shape:
        - Input: ``(N, C, *spatial)`` or ``(C, *spatial)``
        - Output: ``(N, C * K, L)`` or ``(C * K, L)``, ``K = prod(kernel_size)``,
          ``L = prod(out_i)``, ``out_i = (size_i + 2 * padding_i - dilation_i * (kernel_size_i
          - 1) - 1) // stride_i + 1``. Layout: channel-major, then kernel offsets in row-major
          order; positions in row-major order along the last axis.

    Example:
        >>> x = torch.randn(2, 3, 8, 8, 8)        # a batch of 3-d volumes
        >>> unfold(x, kernel_size=3, padding=1).shape
        torch.Size([2, 81, 512])
        >>> unfold(torch.randn(3, 10), kernel_size=(4,), stride=(2,)).shape  # unbatched 1-d
        torch.Size([12, 4])
    """
    input = check_tensor("input", input)
    sizes = {"kernel_size": kernel_size, "dilation": dilation, "padding": padding, "stride": stride}
    d = input_dim(input, sizes)
    geometry = make_geometry(d, kernel_size, dilation, padding, stride)
    batched = check_input_dims(input, d, sizes=sizes)
    batch = input if batched else input.unsqueeze(0)
    check_window_fits(batch.shape[2:], geometry)
    columns = im2col(batch, geometry)
    return columns if batched else columns.squeeze(0)


class Unfold(nn.Module):
    """Module form of :func:`unfoldconv.unfold` (``nn.Unfold`` for any ``d``); see it for more.

    The arguments are checked here, once; ``d`` is found at each call as ``unfold`` finds it
    (a tuple size argument's length, else ``input.dim() - 2``).

    Args:
        kernel_size: block size, an int or a d-tuple.
        dilation: spacing between block elements, an int or a d-tuple.
        padding: zero padding on both sides, an int, a d-tuple, ``"valid"`` or ``"same"``.
        stride: step between blocks, an int or a d-tuple.

    Shape:
        - Input: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)`` (``d`` from a tuple)
        - Output: ``(N, C * K, L)`` or ``(C * K, L)``, ``K = prod(kernel_size)``, ``L`` the
          number of blocks (see :func:`unfoldconv.unfold`)

    Example:
        >>> Unfold(kernel_size=(2, 2, 2), stride=2)(torch.randn(1, 4, 6, 6, 6)).shape
        torch.Size([1, 32, 27])
        >>> Unfold(kernel_size=(3, 3), padding=1)(torch.randn(2, 5, 5)).shape  # unbatched
        torch.Size([18, 25])
    """

    def __init__(
        self,
        kernel_size: IntOrTuple,
        dilation: IntOrTuple = 1,
        padding: Padding = 0,
        stride: IntOrTuple = 1,
    ) -> None:
        """Check the arguments (see the class docstring, ``help(Unfold)``)."""
        super().__init__()
        sizes = {"kernel_size": kernel_size, "dilation": dilation, "padding": padding}
        make_geometry(
            infer_dim({**sizes, "stride": stride}, 1), kernel_size, dilation, padding, stride
        )
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The columns ``(N, C * K, L)`` of ``input`` ``(N, C, *spatial)``: :func:`unfold`."""
        return unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding!r}, "
            f"stride={self.stride}"
        )

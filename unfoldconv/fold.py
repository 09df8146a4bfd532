"""``fold`` (col2im) for any number of spatial dims, and its module ``Fold``."""

from __future__ import annotations

import math

import torch
from torch import nn

from unfoldconv._args import (
    IntOrTuple,
    Padding,
    as_tuple,
    check_tensor,
    check_window_fits,
    infer_dim,
    make_geometry,
)
from unfoldconv._engine import col2im


def fold(
    input: torch.Tensor,
    output_size: IntOrTuple,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple = 1,
    padding: Padding = 0,
    stride: IntOrTuple = 1,
) -> torch.Tensor:
    """Sum sliding local blocks back into a tensor (col2im): the adjoint of :func:`unfold`.

    For ``d = 2`` this matches :func:`torch.nn.functional.fold`. Overlapping values are summed,
    offset by offset in a fixed order, so the result is bit-identical across runs on every
    device (no atomics). ``<unfold(x), y> == <x, fold(y)>``; each is the other's backward.

    How ``d`` is found: the length of any tuple among the size arguments; with all-int sizes
    ``d = 2``, as ``F.fold``.

    Args:
        input: ``(N, C * K, L)`` or unbatched ``(C * K, L)``; any dtype (for ``bool``,
            overlapping values are OR-ed, as ``F.fold`` does).
        output_size: spatial size of the result, an int or a d-tuple.
        kernel_size, dilation, padding, stride: as in :func:`unfoldconv.unfold`.

    Shape:
        - Input: ``(N, C * K, L)`` or ``(C * K, L)`` with ``K = prod(kernel_size)`` and ``L``
          the number of blocks :func:`unfold` yields for ``output_size``.
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.

    Example:
        >>> columns = torch.randn(2, 3 * 27, 4 * 4 * 4)
        >>> fold(columns, output_size=(6, 6, 6), kernel_size=3).shape
        torch.Size([2, 3, 6, 6, 6])
    """
    input = check_tensor("input", input)
    sizes = {
        "output_size": output_size,
        "kernel_size": kernel_size,
        "dilation": dilation,
        "padding": padding,
        "stride": stride,
    }
    d = infer_dim(sizes, default=2)
    spatial = as_tuple("output_size", output_size, d, minimum=1)
    geometry = make_geometry(d, kernel_size, dilation, padding, stride)
    if input.dim() not in (2, 3):
        raise ValueError(
            f"input must be (N, C * K, L) or unbatched (C * K, L), got input of shape "
            f"{tuple(input.shape)}"
        )
    batched = input.dim() == 3
    batch = input if batched else input.unsqueeze(0)
    check_window_fits(spatial, geometry, name="output")
    kernel_numel = geometry.kernel_numel
    if batch.shape[1] % kernel_numel != 0:
        raise ValueError(
            f"input.shape[{batch.dim() - 2}] must be divisible by prod(kernel_size)="
            f"{kernel_numel} (kernel_size={geometry.kernel_size}), got input of shape "
            f"{tuple(input.shape)}"
        )
    num_blocks = math.prod(geometry.output_size(spatial))
    if batch.shape[2] != num_blocks:
        raise ValueError(
            f"input.shape[-1] must be the number of blocks L={num_blocks} that output_size="
            f"{spatial}, kernel_size={geometry.kernel_size}, dilation={geometry.dilation}, "
            f"padding={padding!r}, stride={geometry.stride} give, got input of shape "
            f"{tuple(input.shape)}"
        )
    output = col2im(batch, spatial, geometry)
    return output if batched else output.squeeze(0)


class Fold(nn.Module):
    """Module form of :func:`unfoldconv.fold`; see it for arguments and shapes.

    Example:
        >>> Fold(output_size=(4, 4, 4), kernel_size=2, stride=2)(torch.randn(1, 8, 8)).shape
        torch.Size([1, 1, 4, 4, 4])
    """

    def __init__(
        self,
        output_size: IntOrTuple,
        kernel_size: IntOrTuple,
        dilation: IntOrTuple = 1,
        padding: Padding = 0,
        stride: IntOrTuple = 1,
    ) -> None:
        super().__init__()
        sizes = {
            "output_size": output_size,
            "kernel_size": kernel_size,
            "dilation": dilation,
            "padding": padding,
            "stride": stride,
        }
        d = infer_dim(sizes, default=2)
        as_tuple("output_size", output_size, d, minimum=1)
        make_geometry(d, kernel_size, dilation, padding, stride)
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fold(
            input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, padding={self.padding!r}, stride={self.stride}"
        )

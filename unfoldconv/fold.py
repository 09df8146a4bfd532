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
    dim_source,
    infer_dim,
    is_int,
    make_geometry,
)
from unfoldconv._engine import col2im

#: what all-int sizes mean for fold, in its error messages
FOLD_RULE = "d = 2 (fold's default, as F.fold; give output_size as a tuple for another d)"


def _fitting_output_sizes(sizes: dict, d: int, rows: int, num_blocks: int) -> str:
    """``"; output_size=(8, 8, 8) gives L=64"``: output sizes that would fit ``num_blocks``.

    With all-int sizes, the same ints in another number of dims (a volume folded as an
    image); for any ``d``, the smallest cube-like size with ``L ** (1 / d)`` blocks per dim.
    """
    hints = []
    if all(is_int(v) for v in sizes.values()):  # the d the same ints would need
        for other in range(1, 7):
            if other == d:
                continue
            geometry = make_geometry(
                other, sizes["kernel_size"], sizes["dilation"], sizes["padding"], sizes["stride"]
            )
            output_size = (sizes["output_size"],) * other
            out = geometry.output_size(output_size)
            fits = rows % geometry.kernel_numel == 0 and all(o >= 1 for o in out)
            if fits and math.prod(out) == num_blocks:
                hints.append(f"output_size={output_size} (d = {other}) gives L={num_blocks}")
    per_dim = round(num_blocks ** (1 / d))
    if per_dim >= 1 and per_dim**d == num_blocks and not hints:
        geometry = make_geometry(
            d, sizes["kernel_size"], sizes["dilation"], sizes["padding"], sizes["stride"]
        )
        # the smallest size with per_dim blocks: (per_dim - 1) * stride + span - 2 * padding
        smallest = tuple(
            max((per_dim - 1) * s + dil * (k - 1) + 1 - lo - hi, 1)
            for k, dil, (lo, hi), s in zip(
                geometry.kernel_size, geometry.dilation, geometry.padding, geometry.stride
            )
        )
        if math.prod(geometry.output_size(smallest)) == num_blocks:
            largest = tuple(size + s - 1 for size, s in zip(smallest, geometry.stride))
            sizes_text = f"{smallest}" if largest == smallest else f"{smallest} to {largest}"
            hints.append(f"output_size={sizes_text} gives L={num_blocks}")
    return "; " + " or ".join(hints) if hints else ""


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
            f"{tuple(input.shape)} ({dim_source(sizes, d, FOLD_RULE)})"
            f"{_fitting_output_sizes(sizes, d, batch.shape[1], batch.shape[2])}"
        )
    output = col2im(batch, spatial, geometry)
    return output if batched else output.squeeze(0)


class Fold(nn.Module):
    """Module form of :func:`unfoldconv.fold` (``nn.Fold`` for any ``d``); see it for more.

    ``d`` is the length of any tuple size argument; with all-int sizes ``d = 2``, as ``nn.Fold``.

    Args:
        output_size: spatial size of the result, an int or a d-tuple.
        kernel_size, dilation, padding, stride: as :class:`Unfold`.

    Shape:
        - Input: ``(N, C * K, L)`` or unbatched ``(C * K, L)``, ``K = prod(kernel_size)``, ``L``
          the number of blocks of ``output_size``
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``

    Example:
        >>> Fold(output_size=(4, 4, 4), kernel_size=2, stride=2)(torch.randn(1, 8, 8)).shape
        torch.Size([1, 1, 4, 4, 4])
        >>> Fold(output_size=4, kernel_size=2, stride=2)(torch.randn(12, 4)).shape  # unbatched
        torch.Size([3, 4, 4])
    """

    def __init__(
        self,
        output_size: IntOrTuple,
        kernel_size: IntOrTuple,
        dilation: IntOrTuple = 1,
        padding: Padding = 0,
        stride: IntOrTuple = 1,
    ) -> None:
        """Check the arguments (see the class docstring, ``help(Fold)``)."""
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
        """The blocks ``input`` ``(N, C * K, L)`` summed into ``(N, C, *output_size)``:
        :func:`fold`."""
        return fold(
            input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, padding={self.padding!r}, stride={self.stride}"
        )

"""``unfold_transpose``: the columns of a transposed convolution, and its module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unfoldconv._args import (
    IntOrTuple,
    check_input_dims,
    check_tensor,
    checked_transposed_output_size,
    infer_dim,
    input_dim,
    output_padding_for,
    transposed_arguments,
)
from unfoldconv._engine import im2col
from unfoldconv._geometry import Geometry


def _stride_dilated(input: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """Insert ``stride - 1`` zeros between neighbouring input elements (differentiably)."""
    if all(s == 1 for s in stride):
        return input
    n, c, *spatial = input.shape
    sizes = [(size - 1) * s + 1 for size, s in zip(spatial, stride)]
    dilated = input.new_zeros((n, c, *sizes))
    dilated[(..., *(slice(None, None, s) for s in stride))] = input
    return dilated


def unfold_transpose(
    input: torch.Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> torch.Tensor:
    """Columns of a transposed convolution, for any number ``d`` of spatial dims.

    For the weight ``w`` of ``nn.ConvTransposeNd`` (``groups=1``) and ``x`` of shape
    ``(N, C_in, *spatial)``::

        conv_transpose(x) == einsum("ci,nix->ncx", w.transpose(0, 1).flatten(1),
                                    unfold_transpose(x)).reshape(N, C_out, *out)

    (the layout of ``unfoldNd.unfold_transposeNd``). It is the ordinary unfold of the
    stride-dilated, padded input with the kernel offsets reversed: one strided gather, and its
    backward is a fold. ``d`` is found as for :func:`unfoldconv.unfold`.

    Args:
        input: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)`` (``d`` from a tuple).
        kernel_size, stride, padding, output_padding, dilation: as for
            ``nn.ConvTransposeNd``, each an int or a d-tuple.

    Shape:
        - Input: ``(N, C, *spatial)``
        - Output: ``(N, C * K, L_out)``, ``L_out = prod(out_i)``, ``out_i = (size_i - 1) *
          stride_i - 2 * padding_i + dilation_i * (kernel_size_i - 1) + output_padding_i + 1``.

    Example:
        >>> unfold_transpose(torch.randn(2, 4, 5, 5), kernel_size=3, stride=2).shape
        torch.Size([2, 36, 121])
    """
    input = check_tensor("input", input)
    sizes = {
        "kernel_size": kernel_size,
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "dilation": dilation,
    }
    d = input_dim(input, sizes)
    kernel, step, pad, out_pad, dil = transposed_arguments(
        d, kernel_size, stride, padding, output_padding, dilation
    )
    batched = check_input_dims(input, d, sizes=sizes)
    batch = input if batched else input.unsqueeze(0)
    checked_transposed_output_size(batch.shape[2:], kernel, step, pad, out_pad, dil)

    dilated = _stride_dilated(batch, step)
    # Padding of the dilated input, per dim: dil * (k - 1) - p before, that + output_padding
    # after. Negative amounts crop (a view); positive ones go to the engine's zero padding.
    before = [dl * (k - 1) - p for k, p, dl in zip(kernel, pad, dil)]
    after = [b + op for b, op in zip(before, out_pad)]
    crop = tuple(
        slice(max(-b, 0), size - max(-a, 0)) for size, b, a in zip(dilated.shape[2:], before, after)
    )
    cropped = dilated[(..., *crop)]
    geometry = Geometry(
        kernel_size=kernel,
        dilation=dil,
        padding=tuple((max(b, 0), max(a, 0)) for b, a in zip(before, after)),
        stride=(1,) * d,
        flip=True,
    )
    columns = im2col(cropped, geometry)
    return columns if batched else columns.squeeze(0)


class UnfoldTranspose(nn.Module):
    """Module form of :func:`unfoldconv.unfold_transpose` (unfoldNd's ``UnfoldTransposeNd``).

    ``forward(input, output_size=None)`` picks ``output_padding`` from ``output_size`` exactly
    as ``nn.ConvTransposeNd`` does. ``d`` is found as for :func:`unfoldconv.unfold`.

    Args:
        kernel_size, stride, padding, output_padding, dilation: as ``nn.ConvTransposeNd``, each
            an int or a d-tuple.

    Shape:
        - Input: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)`` (``d`` from a tuple)
        - Output: ``(N, C * K, L_out)`` or ``(C * K, L_out)``, ``L_out`` the number of output
          positions of the transposed convolution (see :func:`unfoldconv.unfold_transpose`)

    Example:
        >>> layer = UnfoldTranspose(kernel_size=3, stride=2, padding=1)
        >>> layer(torch.randn(1, 2, 4, 4), output_size=(8, 8)).shape
        torch.Size([1, 18, 64])
    """

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
    ) -> None:
        """Check the arguments (see the class docstring, ``help(UnfoldTranspose)``)."""
        super().__init__()
        sizes = {
            "kernel_size": kernel_size,
            "stride": stride,
            "padding": padding,
            "output_padding": output_padding,
            "dilation": dilation,
        }
        transposed_arguments(
            infer_dim(sizes, 1), kernel_size, stride, padding, output_padding, dilation
        )
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.dilation = dilation

    def forward(
        self, input: torch.Tensor, output_size: Sequence[int] | None = None
    ) -> torch.Tensor:
        """The columns of ``input`` ``(N, C, *spatial)``; ``output_size`` (``d`` entries, or
        with the leading ``(N, C)``) chooses ``output_padding`` as ``nn.ConvTransposeNd``."""
        output_padding = self.output_padding
        if output_size is not None:
            sizes = {
                "kernel_size": self.kernel_size,
                "stride": self.stride,
                "padding": self.padding,
                "dilation": self.dilation,
            }
            d = infer_dim(sizes, default=input.dim() - 2)
            kernel, step, pad, _, dil = transposed_arguments(
                d, self.kernel_size, self.stride, self.padding, 0, self.dilation
            )
            spatial = input.shape[-d:]
            output_padding = output_padding_for(spatial, output_size, kernel, step, pad, dil)
        return unfold_transpose(
            input, self.kernel_size, self.stride, self.padding, output_padding, self.dilation
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"output_padding={self.output_padding}, dilation={self.dilation}"
        )

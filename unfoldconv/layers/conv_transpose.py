"""``ConvTransposeNd`` and ``ConvTranspose1d/2d/3d``: subclasses of torch's transposed convs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.modules.conv import _ConvTransposeNd

from unfoldconv._args import (
    IntOrTuple,
    check_channels,
    check_padding_mode,
    check_transposed_padding,
    layer_dim,
    output_padding_for,
    transposed_arguments,
)
from unfoldconv.conv_transpose import conv_transpose_prepared
from unfoldconv.layers._base import NativeTwin
from unfoldconv.layers._fixed_dim import fixed_dim


class ConvTransposeNd(NativeTwin, _ConvTransposeNd):
    """N-d transposed convolution layer, ``nn.ConvTranspose2d``'s twin for any ``d``.

    A subclass of torch's ``_ConvTransposeNd`` (and ``ConvTranspose1d/2d/3d`` of
    ``nn.ConvTranspose1d/2d/3d``): constructor, parameters, initialisation, ``extra_repr`` and
    ``state_dict`` are torch's own. The forward is :func:`unfoldconv.conv_transpose` (matmul +
    fold through the engine), with the arguments checked once, here.

    Args:
        in_channels, out_channels: channel counts, each divisible by ``groups``.
        kernel_size, stride, padding, output_padding, dilation: ints or d-tuples
            (``output_padding`` smaller than stride or dilation).
        groups, bias: as ``nn.ConvTranspose2d``.
        padding_mode: only ``"zeros"`` (as torch).
        device, dtype: factory arguments of the parameters.
        dim: number of spatial dims; needed when every size is an int.

    Shape:
        - Input: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``
        - Output: ``(N, C_out, *out)`` or ``(C_out, *out)``, ``out_i = (spatial_i - 1) *
          stride_i - 2 * padding_i + dilation_i * (kernel_size_i - 1) + output_padding_i +
          1``; ``forward(input, output_size)`` picks ``output_padding`` to reach
          ``output_size`` instead.

    Attributes:
        weight: ``(in_channels, out_channels / groups, *kernel_size)``,
            ``kaiming_uniform_(a=sqrt(5))`` as torch, i.e. ``U(-1/sqrt(fan_in),
            1/sqrt(fan_in))`` with ``fan_in = out_channels / groups * prod(kernel_size)``.
        bias: ``(out_channels,)``, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Examples:
        >>> layer = ConvTransposeNd(4, 2, kernel_size=(2, 2, 2, 2), stride=2)
        >>> layer(torch.randn(1, 4, 3, 3, 3, 3)).shape
        torch.Size([1, 2, 6, 6, 6, 6])
    """

    native_classes: ClassVar[dict[int, type[nn.Module]]] = {
        1: nn.ConvTranspose1d,
        2: nn.ConvTranspose2d,
        3: nn.ConvTranspose3d,
    }

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: torch.dtype | None = None,
        dim: int | None = None,
    ) -> None:
        """Build the layer; the arguments are in the class docstring
        (``help(ConvTransposeNd)``)."""
        in_channels, out_channels, groups = check_channels(in_channels, out_channels, groups)
        padding_mode = check_padding_mode(padding_mode, transposed=True)
        check_transposed_padding(padding)
        sizes = {"kernel_size": kernel_size, "stride": stride, "padding": padding}
        sizes.update(output_padding=output_padding, dilation=dilation)
        d = layer_dim(sizes, self.fixed_dim or dim, type(self).__name__)
        kernel_size, stride, padding, output_padding, dilation = transposed_arguments(
            d, kernel_size, stride, padding, output_padding, dilation
        )
        _ConvTransposeNd.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, True,
            output_padding, groups, bias, padding_mode, device=device, dtype=dtype,
        )  # fmt: skip

    def forward(
        self, input: torch.Tensor, output_size: Sequence[int] | None = None
    ) -> torch.Tensor:
        """The transposed convolution of ``input``, ``(N, C_in, *spatial)`` or unbatched
        ``(C_in, *spatial)``; ``output_size`` (``d`` entries, or with the leading ``(N, C_out)``
        or ``(C_out,)``) picks ``output_padding`` to reach it, as ``nn.ConvTranspose2d``."""
        output_padding = self.output_padding
        if output_size is not None:  # as torch: the output_padding that reaches output_size
            output_padding = output_padding_for(
                input.shape[-self.dim :],
                output_size,
                self.kernel_size,
                self.stride,
                self.padding,
                self.dilation,
            )
        sizes = (self.kernel_size, self.stride, self.padding, output_padding, self.dilation)
        return conv_transpose_prepared(input, self.weight, self.bias, sizes, self.groups)


class _FixedDimConvTranspose(ConvTransposeNd):
    """torch's ``nn.ConvTranspose{d}d`` constructor (no ``dim``); subclasses are
    :func:`fixed_dim`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, output_padding, groups,
            bias, dilation, padding_mode, device, dtype,
        )  # fmt: skip


@fixed_dim(1, "ConvTransposeNd")
class ConvTranspose1d(_FixedDimConvTranspose, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` computed by the engine: :class:`ConvTransposeNd` with ``d = 1``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
        dilation, padding_mode, device, dtype: as ``nn.ConvTranspose1d``.

    Shape:
        - Input: ``(N, C_in, L_in)`` or unbatched ``(C_in, L_in)``
        - Output: ``(N, C_out, L_out)`` or ``(C_out, L_out)``, as ``nn.ConvTranspose1d``;
          ``forward(input, output_size)`` as there

    Example:
        >>> ConvTranspose1d(4, 2, 3, stride=2)(torch.randn(2, 4, 5)).shape
        torch.Size([2, 2, 11])
    """


@fixed_dim(2, "ConvTransposeNd")
class ConvTranspose2d(_FixedDimConvTranspose, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` computed by the engine: :class:`ConvTransposeNd` with ``d = 2``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
        dilation, padding_mode, device, dtype: as ``nn.ConvTranspose2d``.

    Shape:
        - Input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``
        - Output: ``(N, C_out, H_out, W_out)`` or ``(C_out, H_out, W_out)``, as
          ``nn.ConvTranspose2d``; ``forward(input, output_size)`` as there

    Example:
        >>> layer = ConvTranspose2d(4, 2, 3, stride=2, padding=1)
        >>> layer(torch.randn(2, 4, 4, 4), output_size=(8, 8)).shape
        torch.Size([2, 2, 8, 8])
    """


@fixed_dim(3, "ConvTransposeNd")
class ConvTranspose3d(_FixedDimConvTranspose, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` computed by the engine: :class:`ConvTransposeNd` with ``d = 3``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
        dilation, padding_mode, device, dtype: as ``nn.ConvTranspose3d``.

    Shape:
        - Input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``
        - Output: ``(N, C_out, D_out, H_out, W_out)`` or ``(C_out, D_out, H_out, W_out)``, as
          ``nn.ConvTranspose3d``; ``forward(input, output_size)`` as there

    Example:
        >>> ConvTranspose3d(8, 4, 4, stride=2, padding=1)(torch.randn(8, 3, 3, 3)).shape
        torch.Size([4, 6, 6, 6])
    """

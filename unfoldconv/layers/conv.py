"""``ConvNd`` and ``Conv1d/2d/3d``: drop-in twins of ``nn.Conv*d`` computed by the engine."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from unfoldconv._args import IntOrTuple, Padding
from unfoldconv.conv import conv
from unfoldconv.layers._base import _ConvNd, _NativeTwin


class ConvNd(_NativeTwin, _ConvNd):
    """N-d convolution layer, ``nn.Conv2d``'s twin for any number ``d`` of spatial dims.

    The forward is :func:`unfoldconv.conv` (unfold + matmul in bounded batch chunks, never
    torch's conv kernels). Parameter names, shapes and initial values under a seed are those of
    ``nn.Conv{d}d``, so state dicts load both ways.

    Args:
        in_channels, out_channels: channel counts, each divisible by ``groups``.
        kernel_size, stride, dilation: ints or d-tuples.
        padding: int, d-tuple, ``"valid"`` or ``"same"`` (stride 1 only).
        groups: independent channel groups.
        bias: add a learnable bias.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        device, dtype: factory arguments of the parameters.
        dim: number of spatial dims ``d``; needed when every size is an int (else the length
            of the tuple sizes).

    Shape:
        - Input: ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``
        - Output: ``(N, C_out, *out)``, ``out_i = (spatial_i + 2 * padding_i - dilation_i *
          (kernel_size_i - 1) - 1) // stride_i + 1``

    Attributes:
        weight: ``(out_channels, in_channels / groups, *kernel_size)``, initialised
            ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))``), ``fan_in
            = in_channels / groups * prod(kernel_size)``.
        bias: ``(out_channels,)``, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
        workspace_bytes: column workspace per batch chunk in bytes (``None``: the default of
            :func:`unfoldconv.conv`, 16 MiB); the memory/speed knob.

    Examples:
        >>> layer = ConvNd(4, 8, kernel_size=3, padding=1, dim=4)
        >>> layer(torch.randn(2, 4, 5, 5, 5, 5)).shape
        torch.Size([2, 8, 5, 5, 5, 5])
    """

    native_classes: ClassVar[dict[int, type[nn.Module]]] = {
        1: nn.Conv1d,
        2: nn.Conv2d,
        3: nn.Conv3d,
    }
    workspace_bytes: int | None = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: torch.dtype | None = None,
        dim: int | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            False,
            0,
            groups,
            bias,
            padding_mode,
            self.fixed_dim if self.fixed_dim is not None else dim,
            device,
            dtype,
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check_input(input)
        padded, padding = self.pad_input(input)
        return conv(
            padded,
            self.weight,
            self.bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            workspace_bytes=self.workspace_bytes,
        )


class _FixedDimConv(ConvNd):
    """torch's ``nn.Conv{d}d`` constructor (no ``dim``); subclasses set ``fixed_dim``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip


class Conv1d(_FixedDimConv):
    """:class:`ConvNd` with ``dim=1``: the twin of ``nn.Conv1d`` (same constructor)."""

    fixed_dim = 1


class Conv2d(_FixedDimConv):
    """:class:`ConvNd` with ``dim=2``: the twin of ``nn.Conv2d`` (same constructor)."""

    fixed_dim = 2


class Conv3d(_FixedDimConv):
    """:class:`ConvNd` with ``dim=3``: the twin of ``nn.Conv3d`` (same constructor)."""

    fixed_dim = 3

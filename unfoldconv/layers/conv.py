"""``ConvNd`` and ``Conv1d/2d/3d``: subclasses of torch's conv layers computed by the engine."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from unfoldconv._args import (
    IntOrTuple,
    Padding,
    as_tuple,
    check_channels,
    check_input_dims,
    check_padding_mode,
    check_tensor,
    layer_dim,
    resolve_padding,
)
from unfoldconv._geometry import Geometry
from unfoldconv._padding import pad_by_mode
from unfoldconv.conv import conv_prepared
from unfoldconv.layers._base import NativeTwin, layer_geometry
from unfoldconv.layers._fixed_dim import fixed_dim


class ConvNd(NativeTwin, _ConvNd):
    """N-d convolution layer, ``nn.Conv2d``'s twin for any number ``d`` of spatial dims.

    A subclass of torch's ``_ConvNd`` (and ``Conv1d/2d/3d`` of ``nn.Conv1d/2d/3d``): the
    constructor, parameters, initialisation, ``extra_repr`` and ``state_dict`` are torch's own;
    only the computation differs. The forward is :func:`unfoldconv.conv` (unfold + matmul in
    bounded batch chunks, never torch's conv kernels), with the arguments checked once, here.

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
        - Input: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``
        - Output: ``(N, C_out, *out)`` or ``(C_out, *out)``, ``out_i = (spatial_i + 2 *
          padding_i - dilation_i * (kernel_size_i - 1) - 1) // stride_i + 1``

    Attributes:
        weight: ``(out_channels, in_channels / groups, *kernel_size)``, initialised
            ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))``), ``fan_in
            = in_channels / groups * prod(kernel_size)``.
        bias: ``(out_channels,)``, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
        workspace_bytes: column workspace per batch chunk in bytes (``None``: the default of
            :func:`unfoldconv.conv`: 16 MiB on the CPU, 1 GiB on a GPU); the memory/speed knob.

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
        """Build the layer; the arguments are in the class docstring (``help(ConvNd)``)."""
        in_channels, out_channels, groups = check_channels(in_channels, out_channels, groups)
        sizes = {"kernel_size": kernel_size, "stride": stride, "padding": padding}
        sizes["dilation"] = dilation
        d = layer_dim(sizes, self.fixed_dim or dim, type(self).__name__)
        kernel_size = as_tuple("kernel_size", kernel_size, d, minimum=1)
        stride = as_tuple("stride", stride, d, minimum=1)
        dilation = as_tuple("dilation", dilation, d, minimum=1)
        padding_mode = check_padding_mode(padding_mode)
        # (before, after) per dim; raises for unknown strings and "same" with stride > 1
        amounts = resolve_padding(padding, kernel_size, dilation, stride)
        padding = padding if isinstance(padding, str) else tuple(lo for lo, _ in amounts)
        _ConvNd.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation,
            False, (0,) * d, groups, bias, padding_mode, device=device, dtype=dtype,
        )  # fmt: skip
        self._prepare()

    def _prepare(self) -> Geometry:
        """The engine geometry of the current attributes (cached; rebuilt if one changed)."""
        key = (self.kernel_size, self.stride, self.padding, self.dilation, self.padding_mode)
        if key != self.__dict__.get("_prepared_key"):
            amounts = resolve_padding(self.padding, self.kernel_size, self.dilation, self.stride)
            self._geometry, self._mode_padding = layer_geometry(
                self.kernel_size, self.dilation, amounts, self.stride, self.padding_mode
            )
            self._prepared_key = key
        return self._geometry

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The convolution of ``input``, ``(N, C_in, *spatial)`` or unbatched ``(C_in,
        *spatial)``, by the engine; see the class docstring for the output shape."""
        return self._conv_forward(input, self.weight, self.bias)

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        geometry = self._prepare()
        if self._mode_padding is not None:  # reflect / replicate / circular: pad first
            check_input_dims(check_tensor("input", input), geometry.dim)
            input = pad_by_mode(input, self._mode_padding, self.padding_mode)
        return conv_prepared(input, weight, bias, geometry, self.groups, self.workspace_bytes)


class _FixedDimConv(ConvNd):
    """torch's ``nn.Conv{d}d`` constructor (no ``dim``); subclasses are :func:`fixed_dim`."""

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


@fixed_dim(1, "ConvNd")
class Conv1d(_FixedDimConv, nn.Conv1d):
    """``nn.Conv1d`` computed by the engine: :class:`ConvNd` with ``d = 1`` (see it for more).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: as ``nn.Conv1d``.

    Shape:
        - Input: ``(N, C_in, L_in)`` or unbatched ``(C_in, L_in)``
        - Output: ``(N, C_out, L_out)`` or ``(C_out, L_out)``, ``L_out`` as ``nn.Conv1d``

    Example:
        >>> Conv1d(4, 8, 3, padding=1)(torch.randn(2, 4, 10)).shape
        torch.Size([2, 8, 10])
    """


@fixed_dim(2, "ConvNd")
class Conv2d(_FixedDimConv, nn.Conv2d):
    """``nn.Conv2d`` computed by the engine: :class:`ConvNd` with ``d = 2`` (see it for more).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: as ``nn.Conv2d``.

    Shape:
        - Input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``
        - Output: ``(N, C_out, H_out, W_out)`` or ``(C_out, H_out, W_out)``, as ``nn.Conv2d``

    Example:
        >>> Conv2d(3, 8, 3, stride=2)(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 4, 4])
    """


@fixed_dim(3, "ConvNd")
class Conv3d(_FixedDimConv, nn.Conv3d):
    """``nn.Conv3d`` computed by the engine: :class:`ConvNd` with ``d = 3`` (see it for more).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: as ``nn.Conv3d``.

    Shape:
        - Input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``
        - Output: ``(N, C_out, D_out, H_out, W_out)`` or ``(C_out, D_out, H_out, W_out)``, as
          ``nn.Conv3d``

    Example:
        >>> Conv3d(2, 4, 3, padding="same")(torch.randn(2, 8, 8, 8)).shape  # unbatched
        torch.Size([4, 8, 8, 8])
    """

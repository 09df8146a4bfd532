"""``LocallyConnectedNd`` and ``LocallyConnected1d/2d/3d``: convolutions with unshared kernels."""

from __future__ import annotations

import math
from typing import Any

import torch

from unfoldconv._args import Geometry, IntOrTuple, Padding, as_tuple
from unfoldconv.layers._base import _ConvNd
from unfoldconv.locally_connected import locally_connected


class LocallyConnectedNd(_ConvNd):
    """Locally connected layer: a convolution whose kernel differs at every output position.

    The forward is :func:`unfoldconv.locally_connected`: one unfold and one batched matmul over
    the output positions, in bounded batch chunks. Built for one ``input_size``; another spatial
    size is an error.

    Args:
        in_channels, out_channels: channel counts, each divisible by ``groups``.
        input_size: spatial size of the input, an int or a d-tuple.
        kernel_size, stride, padding, dilation, groups, padding_mode: as :class:`ConvNd`.
        bias: add a learnable bias per output channel *and* position.
        device, dtype: factory arguments of the parameters.
        dim: number of spatial dims; needed when every size is an int.

    Shape:
        - Input: ``(N, C_in, *input_size)`` or ``(C_in, *input_size)``
        - Output: ``(N, C_out, *out)``, ``out_i = (input_size_i + 2 * padding_i - dilation_i *
          (kernel_size_i - 1) - 1) // stride_i + 1``

    Attributes:
        weight: ``(*out, out_channels, in_channels / groups, *kernel_size)``, initialised like a
            conv with the same fan-in: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in =
            in_channels / groups * prod(kernel_size)`` (what ``kaiming_uniform_(a=sqrt(5))``
            gives a conv weight).
        bias: ``(out_channels, *out)``, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
        output_size: ``out``, the grid of output positions.
        workspace_bytes: column workspace per batch chunk in bytes (``None``: 16 MiB default).

    Examples:
        >>> layer = LocallyConnectedNd(4, 8, input_size=(8, 8), kernel_size=3)
        >>> layer(torch.randn(2, 4, 8, 8)).shape, layer.weight.shape
        (torch.Size([2, 8, 6, 6]), torch.Size([6, 6, 8, 4, 3, 3]))
    """

    workspace_bytes: int | None = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: IntOrTuple,
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
        self._input_size = input_size
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
            extra_sizes={"input_size": input_size},
        )

    @property
    def input_size(self) -> tuple[int, ...]:
        return as_tuple("input_size", self._input_size, self.dim, minimum=1)

    @property
    def output_size(self) -> tuple[int, ...]:
        geometry = Geometry(self.kernel_size, self.dilation, self.padding_amounts, self.stride)
        out = geometry.output_size(self.input_size)
        if any(size < 1 for size in out):
            raise ValueError(
                f"input_size={self.input_size} is too small for kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding!r}: output size {out}"
            )
        return out

    def weight_shape(self) -> tuple[int, ...]:
        kernel = self.kernel_size
        return (*self.output_size, self.out_channels, self.in_channels // self.groups, *kernel)

    def bias_shape(self) -> tuple[int, ...]:
        return (self.out_channels, *self.output_size)

    def fan_in(self) -> int:
        return self.in_channels // self.groups * math.prod(self.kernel_size)

    def reset_parameters(self) -> None:
        # a conv's init with the conv's fan-in (the weight's own shape would give another fan-in)
        bound = 1 / math.sqrt(self.fan_in())
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        batched = self.check_input(input)
        spatial = tuple(input.shape[2 if batched else 1 :])
        if spatial != self.input_size:
            raise ValueError(
                f"input spatial size must be input_size={self.input_size} (the layer has one "
                f"kernel per output position), got input of shape {tuple(input.shape)}"
            )
        padded, padding = self.pad_input(input)
        return locally_connected(
            padded,
            self.weight,
            self.bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            workspace_bytes=self.workspace_bytes,
        )

    def extra_repr(self) -> str:
        first, rest = super().extra_repr().split(", kernel_size=", 1)
        return f"{first}, input_size={self.input_size}, kernel_size={rest}"


class _FixedDimLocallyConnected(LocallyConnectedNd):
    """The constructor without ``dim``; subclasses set ``fixed_dim``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: IntOrTuple,
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
            in_channels, out_channels, input_size, kernel_size, stride, padding, dilation,
            groups, bias, padding_mode, device, dtype,
        )  # fmt: skip


class LocallyConnected1d(_FixedDimLocallyConnected):
    """:class:`LocallyConnectedNd` with ``dim=1``."""

    fixed_dim = 1


class LocallyConnected2d(_FixedDimLocallyConnected):
    """:class:`LocallyConnectedNd` with ``dim=2``."""

    fixed_dim = 2


class LocallyConnected3d(_FixedDimLocallyConnected):
    """:class:`LocallyConnectedNd` with ``dim=3``."""

    fixed_dim = 3

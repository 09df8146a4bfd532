"""``LocallyConnectedNd`` and ``LocallyConnected1d/2d/3d``: convolutions with unshared kernels."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

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
from unfoldconv.layers._base import layer_geometry
from unfoldconv.layers._fixed_dim import fixed_dim
from unfoldconv.locally_connected import locally_connected_prepared


class LocallyConnectedNd(nn.Module):
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
        - Input: ``(N, C_in, *input_size)`` or unbatched ``(C_in, *input_size)``
        - Output: ``(N, C_out, *out)`` or ``(C_out, *out)``, ``out_i = (input_size_i + 2 *
          padding_i - dilation_i * (kernel_size_i - 1) - 1) // stride_i + 1``

    Attributes:
        weight: ``(*out, out_channels, in_channels / groups, *kernel_size)``, initialised like a
            conv with the same fan-in: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in =
            in_channels / groups * prod(kernel_size)`` (what ``kaiming_uniform_(a=sqrt(5))``
            gives a conv weight).
        bias: ``(out_channels, *out)``, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
        output_size: ``out``, the grid of output positions.
        workspace_bytes: column workspace per batch chunk in bytes (``None``: the
            default, 16 MiB on the CPU, 1 GiB on a GPU).

    Examples:
        >>> layer = LocallyConnectedNd(4, 8, input_size=(8, 8), kernel_size=3)
        >>> layer(torch.randn(2, 4, 8, 8)).shape, layer.weight.shape
        (torch.Size([2, 8, 6, 6]), torch.Size([6, 6, 8, 4, 3, 3]))
    """

    #: the fixed number of spatial dims of a ``LocallyConnected2d``-like subclass
    fixed_dim: ClassVar[int | None] = None
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
        """Build the layer; the arguments are in the class docstring
        (``help(LocallyConnectedNd)``)."""
        super().__init__()
        in_channels, out_channels, groups = check_channels(in_channels, out_channels, groups)
        sizes = {"input_size": input_size, "kernel_size": kernel_size, "stride": stride}
        sizes.update(padding=padding, dilation=dilation)
        d = layer_dim(sizes, self.fixed_dim or dim, type(self).__name__)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.input_size = as_tuple("input_size", input_size, d, minimum=1)
        self.kernel_size = as_tuple("kernel_size", kernel_size, d, minimum=1)
        self.stride = as_tuple("stride", stride, d, minimum=1)
        self.dilation = as_tuple("dilation", dilation, d, minimum=1)
        self.padding_mode = check_padding_mode(padding_mode)
        amounts = resolve_padding(padding, self.kernel_size, self.dilation, self.stride)
        self.padding = padding if isinstance(padding, str) else tuple(lo for lo, _ in amounts)
        out = Geometry(self.kernel_size, self.dilation, amounts, self.stride).output_size(
            self.input_size
        )
        if any(size < 1 for size in out):
            raise ValueError(
                f"input_size={self.input_size} is too small for kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding!r}: output size {out}"
            )
        self.output_size = out
        self._geometry, self._mode_padding = layer_geometry(
            self.kernel_size, self.dilation, amounts, self.stride, self.padding_mode
        )
        factory = {"device": device, "dtype": dtype}
        weight_shape = (*out, out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(weight_shape, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty((out_channels, *out), **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def dim(self) -> int:
        """Number of spatial dims ``d``."""
        return len(self.kernel_size)

    def fan_in(self) -> int:
        """Inputs feeding one output: ``in_channels / groups * prod(kernel_size)``."""
        return self.in_channels // self.groups * math.prod(self.kernel_size)

    def reset_parameters(self) -> None:
        """Draw ``weight`` and ``bias`` from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
        # a conv's init with the conv's fan-in (the weight's own shape would give another fan-in)
        bound = 1 / math.sqrt(self.fan_in())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The layer applied to ``input``, ``(N, C_in, *input_size)`` or unbatched ``(C_in,
        *input_size)``; see the class docstring for the output shape."""
        batched = check_input_dims(check_tensor("input", input), self.dim)
        if tuple(input.shape[2 if batched else 1 :]) != self.input_size:
            raise ValueError(
                f"input spatial size must be input_size={self.input_size} (the layer has one "
                f"kernel per output position), got input of shape {tuple(input.shape)}"
            )
        if self._mode_padding is not None:  # reflect / replicate / circular: pad first
            input = pad_by_mode(input, self._mode_padding, self.padding_mode)
        return locally_connected_prepared(
            input, self.weight, self.bias, self._geometry, self.groups, self.workspace_bytes
        )

    def extra_repr(self) -> str:
        # torch's conv format, with input_size: only arguments that differ from their defaults
        parts = [
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}",
            f"kernel_size={self.kernel_size}, stride={self.stride}",
        ]
        if self.padding != (0,) * self.dim:
            parts.append(f"padding={self.padding}")
        if self.dilation != (1,) * self.dim:
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode}")
        if self.fixed_dim is None:
            parts.append(f"dim={self.dim}")
        return ", ".join(parts)


class _FixedDimLocallyConnected(LocallyConnectedNd):
    """The constructor without ``dim``; subclasses are :func:`fixed_dim`."""

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


@fixed_dim(1, "LocallyConnectedNd")
class LocallyConnected1d(_FixedDimLocallyConnected):
    """A 1-d locally connected layer: :class:`LocallyConnectedNd` with ``d = 1`` (see it).

    Args:
        in_channels, out_channels, input_size, kernel_size, stride, padding, dilation, groups,
        bias, padding_mode, device, dtype: as :class:`LocallyConnectedNd` (no ``dim``).

    Shape:
        - Input: ``(N, C_in, L_in)`` or unbatched ``(C_in, L_in)``, ``L_in = input_size``
        - Output: ``(N, C_out, L_out)`` or ``(C_out, L_out)``

    Example:
        >>> LocallyConnected1d(2, 4, input_size=10, kernel_size=3)(torch.randn(5, 2, 10)).shape
        torch.Size([5, 4, 8])
    """


@fixed_dim(2, "LocallyConnectedNd")
class LocallyConnected2d(_FixedDimLocallyConnected):
    """A 2-d locally connected layer: :class:`LocallyConnectedNd` with ``d = 2`` (see it).

    Args:
        in_channels, out_channels, input_size, kernel_size, stride, padding, dilation, groups,
        bias, padding_mode, device, dtype: as :class:`LocallyConnectedNd` (no ``dim``).

    Shape:
        - Input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``, ``(H, W) = input_size``
        - Output: ``(N, C_out, H_out, W_out)`` or ``(C_out, H_out, W_out)``

    Example:
        >>> layer = LocallyConnected2d(3, 8, input_size=(8, 8), kernel_size=3, padding=1)
        >>> layer(torch.randn(3, 8, 8)).shape  # unbatched
        torch.Size([8, 8, 8])
    """


@fixed_dim(3, "LocallyConnectedNd")
class LocallyConnected3d(_FixedDimLocallyConnected):
    """A 3-d locally connected layer: :class:`LocallyConnectedNd` with ``d = 3`` (see it).

    Args:
        in_channels, out_channels, input_size, kernel_size, stride, padding, dilation, groups,
        bias, padding_mode, device, dtype: as :class:`LocallyConnectedNd` (no ``dim``).

    Shape:
        - Input: ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``, ``(D, H, W) =
          input_size``
        - Output: ``(N, C_out, D_out, H_out, W_out)`` or ``(C_out, D_out, H_out, W_out)``

    Example:
        >>> layer = LocallyConnected3d(2, 4, input_size=6, kernel_size=3, stride=3)
        >>> layer(torch.randn(1, 2, 6, 6, 6)).shape, layer.weight.shape
        (torch.Size([1, 4, 2, 2, 2]), torch.Size([2, 2, 2, 4, 2, 3, 3, 3]))
    """

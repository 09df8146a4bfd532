"""``_ConvNd``: the one N-d base of every conv-like layer (checks, parameters, init, repr).

Like torch's ``_ConvNd``: subclasses choose the weight layout (conv, transposed, locally
connected) and the forward; ``Conv1d/2d/3d`` and friends only fix ``dim``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from unfoldconv._args import (
    IntOrTuple,
    Padding,
    as_tuple,
    check_input_dims,
    infer_dim,
    resolve_padding,
)
from unfoldconv._layer_args import (
    check_divisible,
    check_groups,
    check_input_channels,
    check_padding_mode,
    pad_by_mode,
)


class _ConvNd(nn.Module):
    """Shared state of conv-like layers; see :class:`unfoldconv.layers.ConvNd` for arguments.

    Attributes set here: ``in_channels``, ``out_channels``, ``kernel_size``, ``stride``,
    ``padding`` (a tuple, or the string ``"same"`` / ``"valid"``), ``dilation``, ``transposed``,
    ``output_padding``, ``groups``, ``padding_mode`` (all d-tuples where torch has tuples),
    ``dim`` and the parameters ``weight`` and ``bias``.
    """

    #: the fixed number of spatial dims of a ``Conv2d``-like subclass; ``None`` for ``*Nd``
    fixed_dim: int | None = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple,
        padding: Padding,
        dilation: IntOrTuple,
        transposed: bool,
        output_padding: IntOrTuple,
        groups: int,
        bias: bool,
        padding_mode: str,
        dim: int | None,
        device: Any = None,
        dtype: torch.dtype | None = None,
        extra_sizes: dict | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        groups = check_groups(groups)
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {arg}={value!r}")
            check_divisible(arg, value, groups)
        sizes = {
            "kernel_size": kernel_size,
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "output_padding": output_padding,
            **(extra_sizes or {}),
        }
        if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
            raise ValueError(f"dim must be a positive int or None, got dim={dim!r}")
        d = infer_dim(sizes, default=dim if dim is not None else 0)
        if d == 0:
            raise ValueError(
                f"{name} needs dim (the number of spatial dims) when every size argument is "
                f"an int, got dim=None with kernel_size={kernel_size!r}"
            )
        if dim is not None and d != dim:
            raise ValueError(
                f"size arguments of length {d} do not match dim={dim} (kernel_size="
                f"{kernel_size!r}, stride={stride!r}, padding={padding!r}, dilation={dilation!r})"
            )
        self.padding_mode = check_padding_mode(padding_mode)
        if transposed and padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {name}')
        self.dim = d
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = as_tuple("kernel_size", kernel_size, d, minimum=1)
        self.stride = as_tuple("stride", stride, d, minimum=1)
        self.dilation = as_tuple("dilation", dilation, d, minimum=1)
        if isinstance(padding, str) and transposed:
            raise ValueError(
                f"padding must be an int or a tuple of ints for {name}, got padding={padding!r}"
            )
        # (before, after) per dim; raises for unknown strings and "same" with stride > 1
        self.padding_amounts = resolve_padding(
            padding, self.kernel_size, self.dilation, self.stride
        )
        self.padding = (
            padding if isinstance(padding, str) else tuple(lo for lo, _ in self.padding_amounts)
        )
        self.transposed = transposed
        self.output_padding = as_tuple("output_padding", output_padding, d, minimum=0)
        self.groups = groups
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self.weight_shape(), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.bias_shape(), **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def weight_shape(self) -> tuple[int, ...]:
        if self.transposed:  # torch's layout: (C_in, C_out / groups, *kernel_size)
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def bias_shape(self) -> tuple[int, ...]:
        return (self.out_channels,)

    def fan_in(self) -> int:
        """Inputs feeding one output: ``weight.size(1) * prod(kernel_size)``, as torch counts."""
        return self.weight.shape[1] * math.prod(self.kernel_size)

    def reset_parameters(self) -> None:
        # Exactly torch's _ConvNd.reset_parameters, in the same order, so that the same seed
        # gives the same values: kaiming_uniform_(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.fan_in()
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)

    def check_input(self, input: torch.Tensor) -> bool:
        """Check dims and channels of ``input``; whether it is batched."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        batched = check_input_dims(input, self.dim)
        channels = input.shape[1 if batched else 0]
        check_input_channels(channels, self.in_channels, f"in_channels={self.in_channels}")
        return batched

    def pad_input(self, input: torch.Tensor) -> tuple[torch.Tensor, Padding]:
        """``input`` padded by ``padding_mode`` (if not zeros) and the padding left to the op."""
        if self.padding_mode == "zeros":
            return input, self.padding
        return pad_by_mode(input, self.padding_amounts, self.padding_mode), 0

    def extra_repr(self) -> str:
        # torch's format: only arguments that differ from their defaults
        parts = [f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}"]
        parts.append(f"stride={self.stride}")
        if self.padding != (0,) * self.dim:
            parts.append(f"padding={self.padding}")  # torch: padding=same, unquoted
        if self.dilation != (1,) * self.dim:
            parts.append(f"dilation={self.dilation}")
        if self.output_padding != (0,) * self.dim:
            parts.append(f"output_padding={self.output_padding}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode}")
        if self.fixed_dim is None:
            parts.append(f"dim={self.dim}")
        return ", ".join(parts)


class _NativeTwin:
    """``from_native`` / ``to_native`` for layers that have a torch twin (``nn.ConvNd`` etc.).

    Subclasses set ``native_classes`` (dim -> torch class). Conversions share the parameter
    tensors (no copy), so an optimizer that holds them keeps working.
    """

    native_classes: ClassVar[dict[int, type[nn.Module]]] = {}

    def native_config(self) -> dict:
        config = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "bias": self.bias is not None,
            "padding_mode": self.padding_mode,
        }
        if self.transposed:
            config["output_padding"] = self.output_padding
        return config

    @classmethod
    def from_native(cls, module: nn.Module):
        """The layer of this class equal to torch's ``module``, sharing its parameters.

        Example:
            >>> import torch
            >>> from unfoldconv.layers import Conv2d
            >>> Conv2d.from_native(torch.nn.Conv2d(3, 8, 3, padding=1))
            Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
        """
        natives = tuple(cls.native_classes.values())
        if type(module) not in natives:
            raise TypeError(
                f"module must be one of {[c.__name__ for c in natives]}, got "
                f"{type(module).__name__}"
            )
        d = module.weight.dim() - 2
        if cls.fixed_dim is not None and d != cls.fixed_dim:
            raise ValueError(
                f"{cls.__name__} has {cls.fixed_dim} spatial dim(s), got module "
                f"{type(module).__name__} with {d}"
            )
        config = {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "kernel_size": tuple(module.kernel_size),
            "stride": tuple(module.stride),
            "padding": module.padding if isinstance(module.padding, str) else tuple(module.padding),
            "dilation": tuple(module.dilation),
            "groups": module.groups,
            "bias": module.bias is not None,
            "padding_mode": module.padding_mode,
        }
        if module.transposed:
            config["output_padding"] = tuple(module.output_padding)
        if cls.fixed_dim is None:
            config["dim"] = d
        # built on the meta device: no initialisation, no random numbers drawn
        layer = cls(**config, device="meta", dtype=module.weight.dtype)
        layer.weight = module.weight
        layer.bias = module.bias
        return layer

    def to_native(self) -> nn.Module:
        """torch's twin of this layer (``nn.Conv2d`` etc.), sharing its parameters."""
        if self.dim not in self.native_classes:
            raise ValueError(
                f"torch has no {type(self).__name__} twin for dim={self.dim}; to_native needs "
                f"dim in {sorted(self.native_classes)}"
            )
        native = self.native_classes[self.dim](
            **self.native_config(), device="meta", dtype=self.weight.dtype
        )
        native.weight = self.weight
        native.bias = self.bias
        return native

"""What the layers share: the engine geometry of a layer, and conversion to / from torch's twin."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from unfoldconv._geometry import Geometry

PairPadding = tuple[tuple[int, int], ...]


def layer_geometry(
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: PairPadding,
    stride: tuple[int, ...],
    padding_mode: str,
) -> tuple[Geometry, PairPadding | None]:
    """The engine's ``Geometry`` and the ``padding_mode`` padding done before it (or ``None``).

    With ``padding_mode="zeros"`` the engine pads; with any other mode the input is padded by
    :func:`~unfoldconv._padding.pad_by_mode` first and the engine sees no padding.
    """
    if padding_mode == "zeros":
        return Geometry(kernel_size, dilation, padding, stride), None
    unpadded = ((0, 0),) * len(kernel_size)
    return Geometry(kernel_size, dilation, unpadded, stride), padding


class NativeTwin:
    """``from_native`` / ``to_native`` for layers that subclass a torch conv class.

    Subclasses set ``native_classes`` (dim -> torch class) and ``fixed_dim``. Conversions share
    the parameter tensors (no copy), so an optimizer that holds them keeps working.
    """

    native_classes: ClassVar[dict[int, type[nn.Module]]] = {}
    #: the fixed number of spatial dims of a ``Conv2d``-like subclass; ``None`` for ``*Nd``
    fixed_dim: ClassVar[int | None] = None

    @property
    def dim(self) -> int:
        """Number of spatial dims ``d``."""
        return len(self.kernel_size)

    @staticmethod
    def _config(module: nn.Module) -> dict:
        """The constructor arguments that rebuild ``module`` (ours or torch's)."""
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
        if type(module) not in natives:  # exact type: a subclass may compute something else
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
        config = cls._config(module)
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
            **self._config(self), device="meta", dtype=self.weight.dtype
        )
        native.weight = self.weight
        native.bias = self.bias
        return native

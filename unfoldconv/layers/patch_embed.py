"""``PatchEmbed``: ViT patch embedding for any number of spatial dims, timm's names."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from unfoldconv._args import IntOrTuple, as_tuple, check_tensor, layer_dim
from unfoldconv._geometry import Geometry
from unfoldconv.layers.conv import ConvNd


class PatchEmbed(nn.Module):
    """Image / video / volume to patch tokens: ``(N, C, *spatial) -> (N, L, embed_dim)``.

    The parameters are timm's ``PatchEmbed``'s, by name and shape (``proj.weight``,
    ``proj.bias``, ``norm.*``), so its checkpoints load. ``proj`` is a
    :class:`~unfoldconv.layers.ConvNd` and every input goes through it (so hooks on ``proj``
    see every call); with ``stride == patch_size`` and no padding (the ViT case) the conv itself
    takes its non-overlapping route, a rearrange and one matmul.

    Args:
        patch_size: an int or a d-tuple, e.g. ``(2, 16, 16)`` for video tubelets.
        in_channels: input channels.
        embed_dim: token size.
        stride: step between patches (default ``patch_size``).
        padding: zero padding of the input, an int or a d-tuple.
        bias: learnable bias of ``proj``.
        norm_layer: called as ``norm_layer(embed_dim)`` for ``norm``, else ``nn.Identity``.
        flatten: return ``(N, L, embed_dim)``; if ``False``, ``(N, embed_dim, *grid)``.
        img_size: fixed input spatial size (an int or d-tuple); sets ``grid_size`` and
            ``num_patches``, and another input size is an error. ``None``: any size.
        dim: number of spatial dims when every size is an int (default 2, as timm).
        device, dtype: factory arguments of the parameters.

    Shape:
        - Input: ``(N, C, *spatial)``
        - Output: ``(N, L, embed_dim)`` with ``L = prod(grid_i)``, ``grid_i = (spatial_i + 2 *
          padding_i - patch_size_i) // stride_i + 1``; or ``(N, embed_dim, *grid)``.

    Attributes:
        proj: a :class:`~unfoldconv.layers.ConvNd`; ``proj.weight`` is ``(embed_dim,
            in_channels, *patch_size)``, initialised as ``nn.Conv2d`` (``U(-1/sqrt(fan_in),
            1/sqrt(fan_in))``, ``fan_in = in_channels * prod(patch_size)``).
        norm: ``norm_layer(embed_dim)`` or ``nn.Identity()``.
        patch_size, stride, img_size, grid_size, num_patches: as timm (the last three ``None``
            without ``img_size``).

    Examples:
        >>> PatchEmbed(16, 3, 768)(torch.randn(2, 3, 224, 224)).shape  # ViT-B/16
        torch.Size([2, 196, 768])
        >>> PatchEmbed((2, 16, 16), 3, 768)(torch.randn(1, 3, 16, 224, 224)).shape  # tubelets
        torch.Size([1, 1568, 768])
    """

    def __init__(
        self,
        patch_size: IntOrTuple = 16,
        in_channels: int = 3,
        embed_dim: int = 768,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        bias: bool = True,
        norm_layer: Callable[[int], nn.Module] | None = None,
        flatten: bool = True,
        img_size: IntOrTuple | None = None,
        dim: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        sizes = {"patch_size": patch_size, "padding": padding}
        if stride is not None:
            sizes["stride"] = stride
        if img_size is not None:
            sizes["img_size"] = img_size
        d = layer_dim(sizes, dim, type(self).__name__, default=2)  # all-int: 2, as timm
        self.patch_size = as_tuple("patch_size", patch_size, d, minimum=1)
        self.stride = self.patch_size if stride is None else as_tuple("stride", stride, d, 1)
        self.padding = as_tuple("padding", padding, d, minimum=0)
        self.flatten = flatten
        self.proj = ConvNd(
            in_channels,
            embed_dim,
            self.patch_size,
            stride=self.stride,
            padding=self.padding,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.norm = nn.Identity()
        if norm_layer is not None:  # called as timm calls it, then moved to device / dtype
            self.norm = norm_layer(embed_dim).to(device=device, dtype=dtype)
        self.img_size = self.grid_size = self.num_patches = None
        if img_size is not None:
            self.img_size = as_tuple("img_size", img_size, d, minimum=1)
            pairs = tuple((p, p) for p in self.padding)
            geometry = Geometry(self.patch_size, (1,) * d, pairs, self.stride)
            self.grid_size = geometry.output_size(self.img_size)
            if any(g < 1 for g in self.grid_size):
                raise ValueError(
                    f"img_size={self.img_size} is smaller than patch_size={self.patch_size} "
                    f"(padding={self.padding})"
                )
            self.num_patches = math.prod(self.grid_size)

    @property
    def dim(self) -> int:
        return len(self.patch_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if check_tensor("input", input).dim() != self.dim + 2:
            raise ValueError(
                f"input must be batched (N, C, *spatial) with {self.dim} spatial dim(s), got "
                f"input of shape {tuple(input.shape)}"
            )
        if self.img_size is not None and tuple(input.shape[2:]) != self.img_size:
            raise ValueError(
                f"input spatial size must be img_size={self.img_size}, got input of shape "
                f"{tuple(input.shape)}"
            )
        output = self.proj(input)  # (N, E, *grid)
        if self.flatten:
            output = output.flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)
        return self.norm(output)

    def extra_repr(self) -> str:
        parts = [f"patch_size={self.patch_size}"]
        if self.stride != self.patch_size:
            parts.append(f"stride={self.stride}")
        if self.img_size is not None:
            parts.append(f"img_size={self.img_size}")
        if not self.flatten:
            parts.append("flatten=False")
        return ", ".join(parts)

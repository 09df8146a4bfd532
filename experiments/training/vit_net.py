"""A small Vision Transformer for any number of spatial dims, with a choice of patch stem.

The network is ``stem -> + position embeddings -> pre-norm encoder blocks -> norm -> pool ->
head``. The stem turns ``(N, C, *spatial)`` into tokens ``(N, L, E)`` and must expose
``grid_size`` (the token grid, ``prod(grid_size) == L``), which sizes the learned position
embeddings. :func:`make_stem` builds the three stems the experiment compares:

- ``"patch"``: :class:`unfoldconv.layers.PatchEmbed`, non-overlapping (kernel = stride = patch);
- ``"overlap"``: ``PatchEmbed`` with overlapping patches: kernel ``patch + 2 * overlap``, stride
  ``patch``, padding ``overlap``, so the token grid is the non-overlapping one;
- ``"conv"``: :class:`ConvStem`, the Conv twin (``nn.Conv1d/2d/3d``, kernel = stride = patch).

All three name their weight ``proj.weight`` ``(E, C, *kernel)``, so state dicts move between them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from unfoldconv.layers import PatchEmbed

STEMS = ("patch", "overlap", "conv")
POOLS = ("cls", "mean")
TORCH_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def as_tuple(name: str, value: int | Sequence[int], d: int) -> tuple[int, ...]:
    """``value`` as a d-tuple of positive ints, else a ``ValueError`` naming ``name``."""
    values = (value,) * d if isinstance(value, int) else tuple(value)
    if len(values) != d or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ValueError(f"{name} must be an int or a {d}-tuple of ints, got {name}={value!r}")
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be positive, got {name}={value!r}")
    return values


class ConvStem(nn.Module):
    """The Conv twin of ``PatchEmbed``: ``nn.Conv{d}d`` then ``(N, E, *grid) -> (N, L, E)``.

    Args:
        patch_size: kernel size, an int or a d-tuple.
        in_channels, embed_dim: input channels, token size.
        img_size: input spatial size, a d-tuple (``d`` is its length, 1 to 3).
        stride: default ``patch_size``; padding: zero padding; bias: of ``proj``.

    Attributes:
        proj: the ``nn.Conv{d}d``; patch_size, stride, padding, img_size, grid_size,
        num_patches: as ``PatchEmbed``'s.

    Example:
        >>> ConvStem(4, 3, 192, img_size=(32, 32))(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 64, 192])
    """

    def __init__(
        self,
        patch_size: int | Sequence[int],
        in_channels: int,
        embed_dim: int,
        img_size: Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        d = len(img_size)
        if d not in TORCH_CONV:
            raise ValueError(f"ConvStem needs 1 to 3 spatial dims (torch's convs), got {img_size=}")
        self.img_size = as_tuple("img_size", img_size, d)
        self.patch_size = as_tuple("patch_size", patch_size, d)
        self.stride = self.patch_size if stride is None else as_tuple("stride", stride, d)
        self.padding = (padding,) * d if isinstance(padding, int) else tuple(padding)
        self.proj = TORCH_CONV[d](
            in_channels, embed_dim, self.patch_size, self.stride, self.padding, bias=bias
        )
        self.grid_size = tuple(
            (n + 2 * p - k) // s + 1
            for n, p, k, s in zip(self.img_size, self.padding, self.patch_size, self.stride)
        )
        self.num_patches = math.prod(self.grid_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.proj(input).flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)


def make_stem(
    kind: str,
    img_size: Sequence[int],
    patch_size: int | Sequence[int],
    in_channels: int = 3,
    embed_dim: int = 192,
    overlap: int | Sequence[int] | None = None,
) -> nn.Module:
    """One of :data:`STEMS` for inputs of spatial size ``img_size`` (``d = len(img_size)``).

    ``patch_size`` is the token step in every stem; ``overlap`` (``"overlap"`` only, default
    ``patch_size // 2`` per dim) is how far each patch reaches into its neighbours on each side.

    Example:
        >>> make_stem("overlap", (32, 32), 4).proj.weight.shape  # kernel 8, stride 4, padding 2
        torch.Size([192, 3, 8, 8])
    """
    if kind not in STEMS:
        raise ValueError(f"kind must be one of {STEMS}, got kind={kind!r}")
    d = len(img_size)
    patch = as_tuple("patch_size", patch_size, d)
    if kind == "conv":
        return ConvStem(patch, in_channels, embed_dim, img_size=img_size)
    if kind == "patch":
        return PatchEmbed(patch, in_channels, embed_dim, img_size=tuple(img_size), dim=d)
    margin = tuple(max(p // 2, 1) for p in patch) if overlap is None else overlap
    margin = (margin,) * d if isinstance(margin, int) else tuple(margin)
    if len(margin) != d or any(not isinstance(m, int) or m < 1 for m in margin):
        raise ValueError(f"overlap must be a positive int or a {d}-tuple, got overlap={overlap!r}")
    kernel = tuple(p + 2 * m for p, m in zip(patch, margin))
    return PatchEmbed(
        kernel, in_channels, embed_dim, stride=patch, padding=margin, img_size=tuple(img_size)
    )


class VisionTransformer(nn.Module):
    """ViT on any stem with ``grid_size``: tokens, position embeddings, encoder, pooled head.

    Args:
        stem: ``(N, C, *spatial) -> (N, L, E)`` with a ``grid_size`` attribute, e.g. from
            :func:`make_stem`.
        num_classes: outputs of the head.
        embed_dim: token size ``E``; default: ``stem.proj.out_channels``.
        depth: encoder blocks (``nn.TransformerEncoderLayer``, pre-norm, GELU).
        num_heads: attention heads (must divide ``embed_dim``).
        mlp_ratio: hidden size of each block's MLP over ``embed_dim``.
        pool: ``"cls"`` (a learned class token, read out after the encoder) or ``"mean"``
            (mean of the patch tokens).
        dropout: dropout in the blocks.

    Attributes:
        pos_embed: ``(1, L, E)``, one learned vector per patch (the class token has none, it
            is a learned vector itself); cls_token: ``(1, 1, E)`` with ``pool="cls"``, else
            ``None``; num_prefix_tokens: 1 or 0.

    Shape:
        - Input: ``(N, C, *spatial)``, the stem's input; output: ``(N, num_classes)``.

    Example:
        >>> vit = VisionTransformer(make_stem("patch", (8, 32, 32), (2, 4, 4)), 10, depth=2)
        >>> vit(torch.randn(2, 3, 8, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        stem: nn.Module,
        num_classes: int,
        embed_dim: int | None = None,
        depth: int = 4,
        num_heads: int = 3,
        mlp_ratio: float = 2.0,
        pool: str = "cls",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        grid_size = getattr(stem, "grid_size", None)
        if grid_size is None:
            raise ValueError(
                f"stem must expose grid_size (e.g. PatchEmbed built with img_size), got "
                f"{type(stem).__name__} with grid_size={grid_size!r}"
            )
        if embed_dim is None:
            embed_dim = stem.proj.out_channels
        if embed_dim % num_heads:
            raise ValueError(
                f"num_heads must divide embed_dim, got num_heads={num_heads}, {embed_dim=}"
            )
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got pool={pool!r}")
        self.stem = stem
        self.grid_size = tuple(grid_size)
        self.pool = pool
        self.num_prefix_tokens = 1 if pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.grid_size), embed_dim))
        block = dict(dim_feedforward=int(embed_dim * mlp_ratio), dropout=dropout)
        self.blocks = nn.Sequential(
            *(
                nn.TransformerEncoderLayer(
                    embed_dim,
                    num_heads,
                    **block,
                    activation="gelu",
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)  # as timm's ViT
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def embed(self, input: torch.Tensor) -> torch.Tensor:
        """Patch tokens with their position embeddings, ``(N, L, E)``."""
        tokens = self.stem(input)  # (N, C, *spatial) -> (N, L, E)
        if tokens.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"the stem gave {tokens.shape[1]} tokens for input of shape "
                f"{tuple(input.shape)}, expected grid_size={self.grid_size}"
            )
        return tokens + self.pos_embed

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prefix the class token (``pool="cls"``), run the blocks and the final norm.

        ``(N, T, E) -> (N, num_prefix_tokens + T, E)``; ``T`` may be a subset of the patches
        (MAE feeds only the visible ones).
        """
        if self.cls_token is not None:
            cls = self.cls_token.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([cls, tokens], dim=1)
        return self.norm(self.blocks(tokens))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        encoded = self.encode(self.embed(input))
        pooled = encoded[:, 0] if self.pool == "cls" else encoded.mean(dim=1)  # (N, E)
        return self.head(pooled)


def build_vit(
    stem: str = "patch",
    img_size: Sequence[int] = (32, 32),
    patch_size: int | Sequence[int] = 4,
    in_channels: int = 3,
    num_classes: int = 10,
    embed_dim: int = 192,
    depth: int = 4,
    num_heads: int = 3,
    mlp_ratio: float = 2.0,
    pool: str = "cls",
    dropout: float = 0.0,
    overlap: int | Sequence[int] | None = None,
) -> VisionTransformer:
    """:class:`VisionTransformer` on ``make_stem(stem, img_size, patch_size, ...)``.

    Example:
        >>> build_vit("conv", img_size=(32, 32), patch_size=4, depth=1)(
        ...     torch.randn(2, 3, 32, 32)
        ... ).shape
        torch.Size([2, 10])
    """
    stem_module = make_stem(stem, img_size, patch_size, in_channels, embed_dim, overlap)
    return VisionTransformer(
        stem_module, num_classes, embed_dim, depth, num_heads, mlp_ratio, pool, dropout
    )

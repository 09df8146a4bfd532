"""``patchify`` / ``unpatchify``: non-overlapping patches as a pure rearrange (MAE style)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange

from unfoldconv._args import IntOrTuple, as_tuple, check_tensor, infer_dim


def _patch_patterns(d: int) -> tuple[str, str]:
    """einops sides for ``d`` dims: ``n c (g0 p0) (g1 p1)`` and ``n (g0 g1) (c p0 p1)``."""
    grid = [f"g{i}" for i in range(d)]
    patch = [f"p{i}" for i in range(d)]
    image = "n c " + " ".join(f"({g} {p})" for g, p in zip(grid, patch))
    tokens = f"n ({' '.join(grid)}) (c {' '.join(patch)})"
    return image, tokens


def _check_divisible(spatial: Sequence[int], patch: tuple[int, ...], name: str) -> None:
    if any(size % p for size, p in zip(spatial, patch)):
        raise ValueError(
            f"{name} spatial size {tuple(spatial)} must be divisible by patch_size={patch} in "
            f"every dim"
        )


def patchify(input: torch.Tensor, patch_size: IntOrTuple) -> torch.Tensor:
    """Cut ``(N, C, *spatial)`` into non-overlapping patches ``(N, L, C*K)`` (a rearrange).

    Each token is laid out channel-major, then patch offsets in row-major order: the layout of
    :func:`unfoldconv.unfold` and of a flattened conv weight, so ``patchify(x, p) @
    w.flatten(1).T`` is a conv with kernel = stride = ``p``. Tokens come in row-major grid order.
    ``d`` is the length of ``patch_size`` if a tuple, else ``input.dim() - 2``; an unbatched
    ``(C, *spatial)`` input needs a tuple ``patch_size``.

    Args:
        input: ``(N, C, *spatial)`` or ``(C, *spatial)``, every ``spatial_i`` divisible by
            ``patch_size_i``.
        patch_size: an int or a d-tuple.

    Shape:
        - Output: ``(N, L, C * K)``, ``L = prod(spatial_i // patch_size_i)``, ``K =
          prod(patch_size)``.

    Example:
        >>> patchify(torch.randn(2, 3, 32, 32), 16).shape
        torch.Size([2, 4, 768])
    """
    input = check_tensor("input", input)
    d = infer_dim({"patch_size": patch_size}, default=input.dim() - 2)
    if d < 1 or input.dim() not in (d + 1, d + 2):
        raise ValueError(
            f"input must be (N, C, *spatial) or (C, *spatial) with {max(d, 1)} spatial dim(s), "
            f"got input of shape {tuple(input.shape)}"
        )
    patch = as_tuple("patch_size", patch_size, d, minimum=1)
    batched = input.dim() == d + 2
    batch = input if batched else input.unsqueeze(0)
    _check_divisible(batch.shape[2:], patch, "input")
    image, tokens = _patch_patterns(d)
    sizes = {f"p{i}": p for i, p in enumerate(patch)}
    patches = rearrange(batch, f"{image} -> {tokens}", **sizes)
    return patches if batched else patches.squeeze(0)


def unpatchify(
    patches: torch.Tensor, patch_size: IntOrTuple, output_size: IntOrTuple
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(N, L, C*K)`` back to ``(N, C, *output_size)``.

    Args:
        patches: ``(N, L, C * K)`` or unbatched ``(L, C * K)``.
        patch_size: an int or a d-tuple.
        output_size: spatial size of the image, an int or a d-tuple, divisible by
            ``patch_size``; ``d`` is the length of a tuple ``patch_size`` / ``output_size``
            (else 2).

    Example:
        >>> x = torch.randn(2, 3, 4, 32, 32)
        >>> torch.equal(unpatchify(patchify(x, (2, 16, 16)), (2, 16, 16), (4, 32, 32)), x)
        True
    """
    patches = check_tensor("patches", patches)
    d = infer_dim({"patch_size": patch_size, "output_size": output_size}, default=2)
    patch = as_tuple("patch_size", patch_size, d, minimum=1)
    spatial = as_tuple("output_size", output_size, d, minimum=1)
    _check_divisible(spatial, patch, "output_size")
    if patches.dim() not in (2, 3):
        raise ValueError(
            f"patches must be (N, L, C * K) or (L, C * K), got patches of shape "
            f"{tuple(patches.shape)}"
        )
    batched = patches.dim() == 3
    batch = patches if batched else patches.unsqueeze(0)
    grid = [size // p for size, p in zip(spatial, patch)]
    kernel_numel, num_patches = math.prod(patch), math.prod(grid)
    if batch.shape[1] != num_patches or batch.shape[2] % kernel_numel:
        raise ValueError(
            f"patches must be (N, L={num_patches}, C * {kernel_numel}) for output_size={spatial} "
            f"and patch_size={patch}, got patches of shape {tuple(patches.shape)}"
        )
    image, tokens = _patch_patterns(d)
    sizes = {f"p{i}": p for i, p in enumerate(patch)}
    sizes.update({f"g{i}": g for i, g in enumerate(grid)})
    output = rearrange(batch, f"{tokens} -> {image}", **sizes)
    return output if batched else output.squeeze(0)

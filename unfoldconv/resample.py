"""``resample_patch_embed``: a patch-embedding weight for another patch size (FlexiViT), any d."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from unfoldconv._args import as_tuple, check_choice

#: ``F.interpolate`` modes accepted as ``interpolation`` (each is separable, so a d-dim resize
#: is the Kronecker product of d 1-d resizes)
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
#: modes for which ``F.interpolate`` has an anti-aliased kernel
ANTIALIASED = ("bilinear", "bicubic")


def resize_matrix(
    old_size: int, new_size: int, interpolation: str = "bicubic", antialias: bool = True
) -> torch.Tensor:
    """The 1-d resize as a matrix ``R`` ``(new_size, old_size)``: ``resize(v) == R @ v``.

    Column ``j`` is ``F.interpolate`` of the ``j``-th basis vector, resized as a
    ``(1, old_size)`` image to ``(1, new_size)`` (the height of 1 is left alone: at scale 1 every
    mode is the identity), so ``"bicubic"`` / ``"bilinear"`` and ``antialias`` mean exactly
    what they mean for ``F.interpolate`` on images (``align_corners=False``). Built in float64
    on the CPU.

    Example:
        >>> resize_matrix(2, 4, "nearest")
        tensor([[1., 0.],
                [1., 0.],
                [0., 1.],
                [0., 1.]], dtype=torch.float64)
    """
    # the basis as a batch of (1, old_size) images: resized along the width, because torch's
    # anti-aliased bilinear / bicubic resize an (old_size, 1) image wrongly (torch 2.13 CPU:
    # a constant)
    basis = torch.eye(old_size, dtype=torch.float64).reshape(old_size, 1, 1, old_size)
    aa = {"antialias": antialias} if interpolation in ANTIALIASED else {}
    resized = F.interpolate(basis, size=(1, new_size), mode=interpolation, **aa)
    return resized.reshape(old_size, new_size).T  # column j: resize of basis vector j


def _check_arguments(
    weight: torch.Tensor, new_size: Sequence[int], interpolation: str, antialias: bool
) -> tuple[int, ...]:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() < 3:
        raise ValueError(
            f"weight must be (embed_dim, in_channels, *patch_size) with at least one patch "
            f"dim, got weight of shape {tuple(weight.shape)}"
        )
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got dtype={weight.dtype}")
    d = weight.dim() - 2
    new_size = as_tuple("new_size", new_size, d, minimum=1)  # one entry per patch dim
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    if antialias and interpolation not in ANTIALIASED:
        raise ValueError(
            f"antialias=True needs interpolation in {ANTIALIASED} (as F.interpolate), got "
            f"interpolation={interpolation!r}; pass antialias=False"
        )
    return new_size


def resample_patch_embed(
    weight: torch.Tensor,
    new_size: int | Sequence[int],
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample a patch-embedding weight ``(E, C, *patch)`` to patch size ``new_size``.

    FlexiViT's pseudo-inverse resize (Beyer et al. 2023, eq. 3-4), for any number of patch dims
    ``d``. Let ``R`` be the linear map that resizes a patch from ``patch`` to ``new_size``
    (``F.interpolate`` with ``interpolation`` / ``antialias``). The new weight is the
    minimum-norm ``w_new`` with ``R.T @ w_new`` closest to ``w``, i.e. ``w_new = pinv(R).T @ w``
    per ``(e, c)``, so that for every patch ``x``::

        <resize(x, new_size), w_new> == <x, w>     (exactly when no dim shrinks)

    i.e. the token of a resized image under the resampled weight is the original token. When a
    dim shrinks, ``R`` loses information and ``w_new`` is the least-squares best.

    Matches timm's ``timm.layers.resample_patch_embed`` (2-d only there): the same ``R`` (from
    ``F.interpolate`` on basis patches, ``align_corners=False``), the same ``pinv(R).T`` applied
    per ``(e, c)``, ``"bicubic"`` and ``antialias=True`` by default, and the input returned
    unchanged when ``new_size`` equals the current size. Differences: any ``d``; ``R`` is the
    Kronecker product of the 1-d resize matrices (every ``F.interpolate`` mode is separable), and
    ``pinv`` of a Kronecker product is the Kronecker product of the ``pinv`` s, so the full
    ``prod(new) x prod(patch)`` matrix is never formed (a dim whose size stays is left alone);
    the pseudo-inverses are computed in float64 (timm: float32) and applied in float64 for
    float64 weights, else float32, and the result has the input's dtype; ``antialias=True``
    with a mode that has no anti-aliased kernel is a ``ValueError`` (timm: F.interpolate's).
    Differentiable in ``weight``.

    Args:
        weight: ``(embed_dim, in_channels, *patch_size)``, e.g. ``PatchEmbed.proj.weight``.
        new_size: the new patch size, an int or a d-tuple.
        interpolation: ``"bicubic"`` (default), ``"bilinear"``, ``"nearest"``,
            ``"nearest-exact"`` or ``"area"``: the resize the new patch size stands for.
        antialias: ``F.interpolate``'s anti-aliasing (bilinear / bicubic only).

    Shape:
        - Input: ``(E, C, *patch_size)``
        - Output: ``(E, C, *new_size)``

    Example:
        >>> w = torch.randn(192, 3, 4, 4)  # PatchEmbed(patch_size=4, embed_dim=192).proj.weight
        >>> resample_patch_embed(w, (8, 8)).shape
        torch.Size([192, 3, 8, 8])
        >>> x = torch.randn(3, 4, 4)  # one patch; its 2x larger version and the new weight
        >>> big = F.interpolate(x[None], size=(8, 8), mode="bicubic", antialias=True)[0]
        >>> token = torch.einsum("chw,echw->e", x, w)
        >>> big_token = torch.einsum("chw,echw->e", big, resample_patch_embed(w, 8))
        >>> torch.allclose(big_token, token, atol=1e-4)
        True
        >>> resample_patch_embed(torch.randn(8, 3, 2, 4, 4), (4, 8, 8)).shape  # tubelets
        torch.Size([8, 3, 4, 8, 8])
    """
    new_size = _check_arguments(weight, new_size, interpolation, antialias)
    old_size = tuple(weight.shape[2:])
    if new_size == old_size:
        return weight
    work_dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    output = weight.to(work_dtype)
    for axis, (old, new) in enumerate(zip(old_size, new_size)):
        if old == new:
            continue
        pinv = torch.linalg.pinv(resize_matrix(old, new, interpolation, antialias))  # (old, new)
        pinv = pinv.to(device=weight.device, dtype=work_dtype)
        output = output.movedim(axis + 2, -1) @ pinv  # (..., old) -> (..., new) on this axis
        output = output.movedim(-1, axis + 2)
    return output.to(weight.dtype)


def patch_resize_matrix(
    old_size: Sequence[int],
    new_size: Sequence[int],
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """The d-dim resize of a flattened patch, ``(prod(new_size), prod(old_size))``, float64.

    The Kronecker product of the per-dim :func:`resize_matrix` (row-major flattening), so
    ``resize(x).flatten() == patch_resize_matrix(...) @ x.flatten()``. Meant for small patches
    (checks, plots); :func:`resample_patch_embed` never forms it.

    Example:
        >>> patch_resize_matrix((2, 2), (4, 4)).shape
        torch.Size([16, 4])
    """
    if len(old_size) != len(new_size):
        raise ValueError(
            f"old_size and new_size must have the same length, got old_size={tuple(old_size)} "
            f"and new_size={tuple(new_size)}"
        )
    matrix = torch.ones(1, 1, dtype=torch.float64)
    for old, new in zip(old_size, new_size):
        matrix = torch.kron(matrix, resize_matrix(old, new, interpolation, antialias))
    return matrix

"""``PatchEmbed``: ViT patch embedding for any number of spatial dims, a drop-in for timm's."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unfoldconv._args import (
    IntOrTuple,
    as_tuple,
    check_bool,
    check_tensor,
    dim_source,
    layer_dim,
    plural,
)
from unfoldconv._geometry import Geometry
from unfoldconv.layers.conv import ConvNd
from unfoldconv.resample import resample_patch_embed

# spatial axis letters of the default channels-first format: NCW, NCHW, NCDHW, NCVDHW, ...
_SPATIAL_LETTERS = "ABEFGIJKMOPQRSTUVDHW"


def default_format(d: int) -> str:
    """The channels-first format name for ``d`` spatial dims: ``"NCHW"`` for ``d = 2``."""
    return "NC" + _SPATIAL_LETTERS[-d:]


def parse_output_fmt(output_fmt: object, d: int) -> tuple[bool, bool]:
    """``(flatten, channels_last)`` of an ``output_fmt`` string for ``d`` spatial dims.

    ``"NLC"`` / ``"NCL"``: tokens flattened to one axis ``L``, channels last / first (any
    ``d``). Otherwise ``"N"``, ``"C"`` and ``d`` distinct spatial letters, ``C`` second
    (channels first, ``"NCHW"``, ``"NCDHW"``) or last (``"NHWC"``, ``"NDHWC"``); the spatial
    axes keep their order, so only ``C``'s place and the count of letters matter.
    """
    if not isinstance(output_fmt, str):
        raise TypeError(
            f"output_fmt must be a str such as 'NLC' or 'NHWC', got output_fmt={output_fmt!r} "
            f"({type(output_fmt).__name__})"
        )
    if output_fmt in ("NLC", "NCL"):
        return True, output_fmt == "NLC"
    spatial = output_fmt[2:] if output_fmt.startswith("NC") else output_fmt[1:-1]
    valid = (
        len(output_fmt) == d + 2
        and output_fmt[0] == "N"
        and output_fmt.count("C") == 1
        and (output_fmt[1] == "C" or output_fmt[-1] == "C")
        and len(set(spatial)) == d
        and spatial.isalpha()
        and spatial.isupper()
        and "N" not in spatial
    )
    if not valid:
        first = default_format(d)
        last = "N" + first[2:] + "C"
        raise ValueError(
            f"output_fmt must be 'NLC', 'NCL', or 'N', 'C' and {d} distinct upper-case spatial "
            f"letter(s) with C second or last (e.g. {first!r}, {last!r}), got "
            f"output_fmt={output_fmt!r}"
        )
    return False, output_fmt[-1] == "C"


def to_format(output: torch.Tensor, flatten: bool, channels_last: bool) -> torch.Tensor:
    """``(N, E, *grid)`` in the layout of an output format (views, no copy)."""
    if flatten:
        output = output.flatten(2)  # (N, E, *grid) -> (N, E, L)
    if channels_last:
        output = output.movedim(1, -1)  # (N, E, ...) -> (N, ..., E)
    return output


class PatchEmbed(nn.Module):
    """Image / video / volume to patch tokens: ``(N, C, *spatial) -> (N, L, embed_dim)``.

    A drop-in for timm's ``PatchEmbed`` (``timm.layers.PatchEmbed``) for any number of spatial
    dims ``d``, with overlapping patches (``stride``, ``padding``) on top. The parameters are
    timm's by name and shape (``proj.weight``, ``proj.bias``, ``norm.*``), so its checkpoints
    load; every keyword timm's ``PatchEmbed`` takes is accepted (``in_chans``, ``output_fmt``,
    ``strict_img_size``, ``dynamic_img_pad``, ...), so ``VisionTransformer(embed_layer=
    PatchEmbed)`` builds, and the methods timm's ViT calls exist (``feat_ratio``,
    ``dynamic_feat_size``, ``set_input_size``). ``proj`` is a :class:`~unfoldconv.layers.ConvNd`
    and every input goes through it (hooks on ``proj`` see every call); with ``stride ==
    patch_size`` and no padding (the ViT case) the conv takes its non-overlapping route, a
    rearrange and one matmul.

    Args:
        patch_size: an int or a d-tuple, e.g. ``(2, 16, 16)`` for video tubelets.
        in_channels: input channels (timm's ``in_chans`` is accepted as a keyword alias and
            wins over the default 3; ``in_chans`` with another non-default value is an error).
        embed_dim: token size.
        stride: step between patches (default ``patch_size``; smaller overlaps).
        padding: zero padding of the input on both sides, an int or a d-tuple.
        bias: learnable bias of ``proj``.
        norm_layer: called as ``norm_layer(embed_dim)`` for ``norm`` (then moved to ``device`` /
            ``dtype``), else ``nn.Identity``; applied to the formatted output, as timm.
        flatten: return ``(N, L, embed_dim)``; if ``False``, ``(N, embed_dim, *grid)``. Ignored
            (set to ``False``) when ``output_fmt`` is given, as timm.
        img_size: input spatial size (an int or a d-tuple); sets ``grid_size`` and
            ``num_patches``. ``None`` (our default; timm's is 224): any size.
        dim: number of spatial dims when every size is an int (default 2, as timm).
        device, dtype: factory arguments of the parameters.
        in_chans: timm's name of ``in_channels`` (keyword only).
        output_fmt: keyword only; the output layout. ``"NLC"`` (tokens) or ``"NCL"``, or the
            grid with channels first or last, named by ``"N"``, ``"C"`` and one letter per
            spatial dim: ``"NCHW"`` / ``"NHWC"`` for images, ``"NCDHW"`` / ``"NDHWC"`` for
            video (any distinct upper-case letters: only the place of ``C`` and the number of
            letters matter). Default: ``"NLC"`` if ``flatten`` else channels first.
        strict_img_size: keyword only; with ``img_size`` given, ``True`` (default, as timm)
            makes another input size an error; ``False`` accepts any size whose windows tile
            it exactly (for patches: a multiple of ``patch_size``) and computes the grid per
            call, as timm's ``dynamic_img_size`` ViTs need. Without ``img_size``: any size.
        dynamic_img_pad: keyword only; zero-pad each input at the end of each spatial dim up to
            the next size the windows tile (for patches: the next multiple of ``patch_size``).

    Shape:
        - Input: ``(N, C, *spatial)`` (batched only, as timm)
        - Output: ``(N, L, embed_dim)`` with ``L = prod(grid_i)``, ``grid_i = (spatial_i + 2 *
          padding_i + pad_i - patch_size_i) // stride_i + 1`` (``pad_i`` the end padding of
          ``dynamic_img_pad``, else 0); or the layout of ``output_fmt``.

    Attributes:
        proj: a :class:`~unfoldconv.layers.ConvNd`; ``proj.weight`` is ``(embed_dim,
            in_channels, *patch_size)``, initialised as ``nn.Conv2d`` (``U(-1/sqrt(fan_in),
            1/sqrt(fan_in))``, ``fan_in = in_channels * prod(patch_size)``).
        norm: ``norm_layer(embed_dim)`` or ``nn.Identity()``.
        patch_size, stride, padding: d-tuples.
        img_size, grid_size, num_patches: as timm (``None`` without ``img_size``); with
            ``dynamic_img_pad`` an ``img_size`` that is not a multiple of the patch counts its
            padded last patch (the grid ``forward`` returns; timm's rounds down).
        flatten, output_fmt, strict_img_size, dynamic_img_pad: as timm (``output_fmt`` a str).

    Examples:
        >>> PatchEmbed(16, 3, 768)(torch.randn(2, 3, 224, 224)).shape  # ViT-B/16
        torch.Size([2, 196, 768])
        >>> PatchEmbed((2, 16, 16), 3, 768)(torch.randn(1, 3, 16, 224, 224)).shape  # tubelets
        torch.Size([1, 1568, 768])
        >>> layer = PatchEmbed(img_size=224, patch_size=16, in_chans=3, embed_dim=192,  # timm's
        ...                    strict_img_size=False, output_fmt="NHWC", dynamic_img_pad=True)
        >>> layer(torch.randn(1, 3, 100, 120)).shape  # padded to 112 x 128
        torch.Size([1, 7, 8, 192])
        >>> layer.set_input_size(patch_size=8)  # same weights, resampled (FlexiViT)
        >>> layer.grid_size, layer(torch.randn(1, 3, 64, 64)).shape
        ((28, 28), torch.Size([1, 8, 8, 192]))
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
        *,
        in_chans: int | None = None,
        output_fmt: str | None = None,
        strict_img_size: bool = True,
        dynamic_img_pad: bool = False,
    ) -> None:
        """Build the layer; the arguments are in the class docstring (``help(PatchEmbed)``)."""
        super().__init__()
        if in_chans is not None:
            if in_channels not in (3, in_chans):  # 3: our default, i.e. not given
                raise ValueError(
                    f"in_chans is timm's name of in_channels: give one, got "
                    f"in_channels={in_channels!r} and in_chans={in_chans!r}"
                )
            in_channels = in_chans
        sizes = {"patch_size": patch_size, "padding": padding}
        if stride is not None:
            sizes["stride"] = stride
        if img_size is not None:
            sizes["img_size"] = img_size
        d = layer_dim(sizes, dim, type(self).__name__, default=2)  # all-int: 2, as timm
        # how d was found, for the input error: a tuple size, dim, or timm's default 2
        self._dim_source = dim_source(sizes, d, "d = 2 (as timm; give dim for another d)")
        if dim is not None and "every size" in self._dim_source:
            self._dim_source = f"dim={d}"
        self.patch_size = as_tuple("patch_size", patch_size, d, minimum=1)
        self.stride = self.patch_size if stride is None else as_tuple("stride", stride, d, 1)
        self.padding = as_tuple("padding", padding, d, minimum=0)
        if output_fmt is not None:  # as timm: an explicit format replaces flatten
            self._layout = parse_output_fmt(output_fmt, d)
            self.flatten, self.output_fmt = False, output_fmt
        else:
            self._layout = (False, False)
            self.flatten, self.output_fmt = check_bool("flatten", flatten), default_format(d)
        self.strict_img_size = check_bool("strict_img_size", strict_img_size)
        self.dynamic_img_pad = check_bool("dynamic_img_pad", dynamic_img_pad)
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
        self.img_size, self.grid_size, self.num_patches = self._init_img_size(img_size)

    @property
    def dim(self) -> int:
        """Number of spatial dims ``d``."""
        return len(self.patch_size)

    def _geometry(self) -> Geometry:
        pairs = tuple((p, p) for p in self.padding)
        return Geometry(self.patch_size, (1,) * self.dim, pairs, self.stride)

    def _init_img_size(self, img_size: IntOrTuple | None) -> tuple[Any, Any, Any]:
        """``(img_size, grid_size, num_patches)`` as timm's attributes (``None`` s for None)."""
        if img_size is None:
            return None, None, None
        img_size = as_tuple("img_size", img_size, self.dim, minimum=1)
        grid_size = self._geometry().output_size(self._padded_size(img_size))
        if any(g < 1 for g in grid_size):
            raise ValueError(
                f"img_size={img_size} is smaller than patch_size={self.patch_size} "
                f"(padding={self.padding})"
            )
        return img_size, grid_size, math.prod(grid_size)

    def _end_padding(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """``dynamic_img_pad``'s zeros at the end of each dim: up to the next size the windows
        tile (timm: ``(p - size % p) % p``, the same for ``stride == patch_size``)."""
        if not self.dynamic_img_pad:
            return (0,) * self.dim
        amounts = []
        for size, k, s, p in zip(spatial, self.patch_size, self.stride, self.padding):
            total = size + 2 * p
            amounts.append(k - total if total < k else -(total - k) % s)
        return tuple(amounts)

    def _padded_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return tuple(s + e for s, e in zip(spatial, self._end_padding(spatial)))

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, ...]:
        """Input size per output position: ``stride`` (timm: ``patch_size``, the same there);
        its largest entry if ``as_scalar``."""
        return max(self.stride) if as_scalar else self.stride

    def dynamic_feat_size(self, img_size: IntOrTuple) -> tuple[int, ...]:
        """The grid an input of spatial size ``img_size`` gives, ``dynamic_img_pad`` included.

        Example:
            >>> PatchEmbed(16, dynamic_img_pad=True).dynamic_feat_size((100, 128))
            (7, 8)
        """
        img_size = as_tuple("img_size", img_size, self.dim, minimum=1)
        return self._geometry().output_size(self._padded_size(img_size))

    def set_input_size(
        self, img_size: IntOrTuple | None = None, patch_size: IntOrTuple | None = None
    ) -> None:
        """Change the input size and / or the patch size, in place, as timm's.

        A new ``patch_size`` resamples ``proj.weight`` with
        :func:`~unfoldconv.resample_patch_embed` (FlexiViT's pseudo-inverse, bicubic,
        anti-aliased). A non-overlapping stem keeps ``stride == patch_size``, and its tokens of an
        image resized by ``new / old`` then approximate the old tokens (FlexiViT). An
        overlapping stem keeps its ``stride`` and ``padding``, so its grid changes with the
        kernel (``grid_size`` follows; resize position embeddings to it) and no such identity
        holds. ``proj`` stays the same module (its hooks stay) with a new ``weight``
        parameter (rebuild the optimizer, as after timm's). ``img_size=None`` keeps the current
        one; ``grid_size`` and ``num_patches`` follow.
        """
        if patch_size is not None:
            new_patch = as_tuple("patch_size", patch_size, self.dim, minimum=1)
            if new_patch != self.patch_size:
                weight = self.proj.weight
                with torch.no_grad():
                    resampled = resample_patch_embed(weight, new_patch)
                self.proj.weight = nn.Parameter(resampled, requires_grad=weight.requires_grad)
                if self.stride == self.patch_size:
                    self.stride = new_patch
                self.patch_size = new_patch
                self.proj.kernel_size, self.proj.stride = new_patch, self.stride
        if img_size is None:
            img_size = self.img_size
        self.img_size, self.grid_size, self.num_patches = self._init_img_size(img_size)

    def _check_input(self, input: torch.Tensor) -> None:
        if check_tensor("input", input).dim() != self.dim + 2:
            given = input.dim() - 2
            hint = ""
            if given >= 1 and "every size" in self._dim_source:
                example = ", ".join(["2"] + ["16"] * (given - 1))
                hint = (
                    f"; for {plural(given, 'spatial dim')} give dim={given} or a {given}-tuple "
                    f"patch_size such as ({example}{',' if given == 1 else ''})"
                )
            raise ValueError(
                f"input must be batched (N, C, *spatial) with {plural(self.dim, 'spatial dim')} "
                f"({self._dim_source}), "
                f"got input of shape {tuple(input.shape)}{hint}"
            )
        if input.shape[1] != self.proj.in_channels:  # the layer's words, not the conv's groups
            raise ValueError(
                f"input must have {plural(self.proj.in_channels, 'channel')} (PatchEmbed's "
                f"in_channels / in_chans), got input with {plural(input.shape[1], 'channel')} "
                f"(shape {tuple(input.shape)})"
            )
        if self.img_size is None:
            return
        spatial = tuple(input.shape[2:])
        if self.strict_img_size:
            if spatial != self.img_size:
                raise ValueError(
                    f"input spatial size must be img_size={self.img_size}, got input of shape "
                    f"{tuple(input.shape)} (strict_img_size=True)"
                )
        elif not self.dynamic_img_pad:
            parts = zip(spatial, self.patch_size, self.stride, self.padding)
            if any((size + 2 * p - k) % s for size, k, s, p in parts):
                raise ValueError(
                    f"input spatial size must be tiled by the windows (patch_size="
                    f"{self.patch_size}, stride={self.stride}, padding={self.padding}) with "
                    f"strict_img_size=False and dynamic_img_pad=False, got input of shape "
                    f"{tuple(input.shape)}"
                )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, L, embed_dim)`` of ``input`` ``(N, C, *spatial)`` (or the layout of
        ``output_fmt``); see the class docstring."""
        self._check_input(input)
        end_padding = self._end_padding(input.shape[2:])
        if any(end_padding):  # F.pad lists the last dim first
            input = F.pad(input, [a for e in reversed(end_padding) for a in (0, e)])
        output = self.proj(input)  # (N, E, *grid)
        if self.flatten:
            output = output.flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)
        else:
            output = to_format(output, *self._layout)
        return self.norm(output)

    def extra_repr(self) -> str:
        parts = [f"patch_size={self.patch_size}"]
        if self.stride != self.patch_size:
            parts.append(f"stride={self.stride}")
        if any(self.padding):
            parts.append(f"padding={self.padding}")
        if self.img_size is not None:
            parts.append(f"img_size={self.img_size}")
            if not self.strict_img_size:
                parts.append("strict_img_size=False")
        if not self.flatten and self.output_fmt != default_format(self.dim):
            parts.append(f"output_fmt={self.output_fmt!r}")
        elif not self.flatten:
            parts.append("flatten=False")
        if self.dynamic_img_pad:
            parts.append("dynamic_img_pad=True")
        return ", ".join(parts)

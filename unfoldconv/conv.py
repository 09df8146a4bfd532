"""``conv``: an N-d convolution computed as unfold + matmul through the engine."""

from __future__ import annotations

import math

import torch

from unfoldconv._args import (
    Geometry,
    IntOrTuple,
    Padding,
    check_input_dims,
    check_tensor,
    check_window_fits,
    infer_dim,
    make_geometry,
)
from unfoldconv._chunked import ChunkedConv, check_workspace_bytes, plain_conv
from unfoldconv._layer_args import (
    check_bias,
    check_divisible,
    check_groups,
    check_input_channels,
    check_same_kind,
    follows_autocast,
)


def conv_dim(
    weight: torch.Tensor, stride: IntOrTuple, padding: Padding, dilation: IntOrTuple
) -> int:
    """``d`` of a convolution: the length of a tuple size argument, else ``weight.dim() - 2``."""
    sizes = {"stride": stride, "padding": padding, "dilation": dilation}
    d = infer_dim(sizes, default=weight.dim() - 2)
    if weight.dim() != d + 2 or d < 1:
        raise ValueError(
            f"weight must be (C_out, C_in / groups, *kernel_size) with {max(d, 1)} spatial "
            f"dim(s) (d is the length of the tuple size arguments, else weight.dim() - 2), got "
            f"weight of shape {tuple(weight.shape)}"
        )
    return d


def conv_batch(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """Convolution of a checked batch ``(N, C, *spatial)``; picks the cheapest engine route.

    - 1x1 kernel, stride 1, no padding: no unfold at all, one matmul.
    - under ``torch.compile`` or for an empty batch: whole-batch unfold + matmul (the compiler
      plans memory itself).
    - otherwise: :class:`~unfoldconv._chunked.ChunkedConv` (bounded workspace, see there).
    """
    n, channels, *spatial = input.shape
    c_out = weight.shape[0]
    pointwise = (
        geometry.kernel_numel == 1
        and all(s == 1 for s in geometry.stride)
        and not any(lo or hi for lo, hi in geometry.padding)
    )
    if pointwise:
        num_blocks = math.prod(spatial)
        columns = input.reshape(n, groups, channels // groups, num_blocks)  # (N, g, C/g, L)
        kernels = weight.reshape(groups, c_out // groups, channels // groups)  # (g, C_out/g, C/g)
        # einsum, not a broadcast matmul: the weight gradient of a broadcast matmul is built per
        # sample, (N, g, C_out/g, C/g), before it is summed (1.6x native's peak at batch 256)
        output = torch.einsum("goc,ngcl->ngol", kernels, columns)
        output = output.reshape(n, c_out, *spatial)  # (N, g, C_out/g, L) -> (N, C_out, *spatial)
        if bias is not None:
            output = output + bias.view(1, c_out, *([1] * len(spatial)))
        return output
    if n == 0 or torch.compiler.is_compiling():
        return plain_conv(input, weight, bias, geometry, groups)
    return ChunkedConv.apply(input, weight, bias, geometry, groups, workspace_bytes)


@follows_autocast
def conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """N-d convolution (cross-correlation, as ``F.conv1d/2d/3d``) for any number ``d`` of dims.

    Computed by the engine only: the input is unfolded into columns and multiplied by the
    flattened weight, never by torch's conv kernels. The columns are gathered in batch chunks
    into one reused workspace of at most ``workspace_bytes`` (forward and again in backward), so
    autograd keeps the input, not a ``K`` times larger copy; a 1x1 kernel with stride 1 and no
    padding is a plain matmul.

    How ``d`` is found: the length of any tuple among ``stride``, ``padding``, ``dilation``;
    with all-int sizes ``d = weight.dim() - 2``.

    Args:
        input: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
        weight: ``(C_out, C_in / groups, *kernel_size)``.
        bias: ``(C_out,)`` or ``None``.
        stride: step between windows, an int or a d-tuple.
        padding: zero padding on both sides, an int, a d-tuple, ``"valid"`` or ``"same"`` (stride
            1 only; an odd total puts the extra element at the end, as torch).
        dilation: spacing between kernel elements, an int or a d-tuple.
        groups: split input and output channels into this many independent groups.
        workspace_bytes: keyword-only; the column workspace of one chunk in bytes (default
            :data:`unfoldconv._chunked.DEFAULT_WORKSPACE_BYTES`, 16 MiB, or the value set by
            ``with unfoldconv._chunked.workspace(num_bytes):``). Smaller saves memory, larger
            makes fewer, larger matmuls; at least one sample is gathered at a time.

    Shape:
        - Input: ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``
        - Output: ``(N, C_out, *out)``, ``out_i = (spatial_i + 2 * padding_i - dilation_i *
          (kernel_size_i - 1) - 1) // stride_i + 1``

    Examples:
        >>> x, w = torch.randn(2, 4, 5, 6, 7, 8), torch.randn(6, 4, 3, 3, 3, 3)  # d = 4
        >>> conv(x, w, padding=1).shape
        torch.Size([2, 6, 5, 6, 7, 8])
        >>> conv(torch.randn(2, 4, 9, 9), torch.randn(8, 2, 3, 3), groups=2, stride=2).shape
        torch.Size([2, 8, 4, 4])
    """
    input = check_tensor("input", input)
    weight = check_tensor("weight", weight)
    groups = check_groups(groups)
    check_workspace_bytes(workspace_bytes)
    d = conv_dim(weight, stride, padding, dilation)
    geometry = make_geometry(d, tuple(weight.shape[2:]), dilation, padding, stride)
    batched = check_input_dims(input, d)
    batch = input if batched else input.unsqueeze(0)
    check_divisible("weight.shape[0] (C_out)", weight.shape[0], groups)
    check_input_channels(
        batch.shape[1],
        weight.shape[1] * groups,
        f"weight.shape[1] * groups = {weight.shape[1]} * {groups}",
    )
    check_bias(bias, (weight.shape[0],))
    check_same_kind(batch, weight, bias)
    check_window_fits(batch.shape[2:], geometry)
    output = conv_batch(batch, weight, bias, geometry, groups, workspace_bytes)
    return output if batched else output.squeeze(0)

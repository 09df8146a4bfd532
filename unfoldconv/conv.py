"""``conv``: an N-d convolution computed as unfold + matmul through the engine."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unfoldconv import kernels
from unfoldconv._args import (
    IntOrTuple,
    Padding,
    check_bias,
    check_divisible,
    check_input_channels,
    check_input_dims,
    check_int,
    check_same_kind,
    check_tensor,
    check_weight_dim,
    check_window_fits,
    check_workspace_bytes,
    infer_dim,
    make_geometry,
)
from unfoldconv._autocast import follows_autocast
from unfoldconv._chunked import (
    ChunkedConv,
    conv_chunks,
    conv_precision,
    needs_autograd,
    plain_conv,
    takes_whole_batch,
)
from unfoldconv._engine import apply_function
from unfoldconv._geometry import Geometry


def conv_dim(
    weight: torch.Tensor, stride: IntOrTuple, padding: Padding, dilation: IntOrTuple
) -> int:
    """``d`` of a convolution: the length of a tuple size argument, else ``weight.dim() - 2``."""
    sizes = {"stride": stride, "padding": padding, "dilation": dilation}
    d = infer_dim(sizes, default=weight.dim() - 2)
    layout = "(C_out, C_in / groups, *kernel_size)"
    check_weight_dim(weight, d, d + 2, layout, "weight.dim() - 2")
    return d


@conv_precision
def _non_overlapping_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """Windows that tile the input (kernel == stride, no padding or dilation): a rearrange + GEMM.

    The patch embedding of a ViT and the 1x1 convolution: the columns hold each input element
    once, so they are built by a reshape of the input (a copy at most), kept by autograd like
    any matmul operand, and no chunking is needed.
    """
    d = geometry.dim
    n, channels = input.shape[:2]
    c_out = weight.shape[0]
    kernel = geometry.kernel_size
    grid = geometry.output_size(input.shape[2:])
    # the windows cover grid * kernel elements per dim: drop the remainder (as a conv does)
    input = input[(..., *(slice(0, g * k) for g, k in zip(grid, kernel)))]
    # (N, C, *(g_i * k_i)) -> (N, groups, C/groups, g_0, k_0, g_1, k_1, ...)
    sizes = [size for pair in zip(grid, kernel) for size in pair]
    blocks = input.reshape(n, groups, channels // groups, *sizes)
    kernel_axes, grid_axes = range(4, 3 + 2 * d, 2), range(3, 3 + 2 * d, 2)
    if groups == 1 and geometry.kernel_numel > 1:  # patches (ViT): token-major, one GEMM
        # -> (N, *grid, 1, C, *kernel) -> (N, L, C*K): the tokens of unfoldconv.patchify
        # explicit sizes, no -1: an empty batch (N = 0) cannot infer one
        tokens = blocks.permute(0, *grid_axes, 1, 2, *kernel_axes).reshape(
            n, math.prod(grid), channels * geometry.kernel_numel
        )
        output = F.linear(tokens, weight.reshape(c_out, -1), bias)  # (N, L, C_out)
        # (N, L, C_out) -> (N, C_out, *grid): a channels-last view, as torch's conv gives for
        # channels-last input; PatchEmbed's flatten(2).transpose(1, 2) is then copy-free
        return output.transpose(1, 2).unflatten(2, grid)
    # -> (N, groups, C/groups, *kernel, *grid) -> (N, groups, C/groups * K, L)
    columns = blocks.permute(0, 1, 2, *kernel_axes, *grid_axes).reshape(
        n, groups, channels // groups * geometry.kernel_numel, math.prod(grid)
    )
    kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
    # einsum, not a broadcast matmul: the weight gradient of a broadcast matmul is built per
    # sample, (N, g, C_out/g, C/g*K), before it is summed (1.6x native's peak at batch 256)
    output = torch.einsum("gok,ngkl->ngol", kernels, columns)
    output = output.reshape(n, c_out, *grid)  # (N, g, C_out/g, L) -> (N, C_out, *grid)
    if bias is not None:
        output = output + bias.view(1, c_out, *([1] * d))
    return output


def conv_batch(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """Convolution of a checked batch ``(N, C, *spatial)``; picks the cheapest engine route.

    - windows that tile the input (1x1 kernel, ViT patches): a rearrange and one GEMM.
    - CUDA tensors (and CPU ones with the ``"triton"`` backend under the interpreter): the
      implicit-GEMM Triton convolution (:func:`unfoldconv.kernels.conv`), unless the conv route
      is ``"unfold"`` (``UNFOLDCONV_CONV_ROUTE`` / ``conv_route``).
    - for an empty batch, under ``torch.compile`` (the compiler plans memory itself) or inside
      ``torch.func`` transforms: whole-batch unfold + matmul
      (:func:`~unfoldconv._chunked.takes_whole_batch`).
    - otherwise: :class:`~unfoldconv._chunked.ChunkedConv` (bounded workspace, see there), or
      its forward alone when nothing needs a gradient.
    """
    if geometry.is_non_overlapping:
        return _non_overlapping_conv(input, weight, bias, geometry, groups)
    if kernels.conv_wanted(input, weight, geometry):  # implicit GEMM on the GPU (kernels/_conv)
        return kernels.conv(input, weight, bias, geometry, groups)
    if takes_whole_batch(input):
        return plain_conv(input, weight, bias, geometry, groups)
    if not needs_autograd(input, weight, bias):
        return conv_chunks(input, weight, bias, geometry, groups, workspace_bytes)
    output, _ = apply_function(ChunkedConv, input, weight, bias, geometry, groups, workspace_bytes)
    return output


@follows_autocast
def conv_prepared(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """:func:`conv` once its arguments are checked (the layers' entry): only the checks that
    depend on ``input`` run here, once."""
    input = check_tensor("input", input)
    batched = check_input_dims(input, geometry.dim)
    batch = input if batched else input.unsqueeze(0)
    expected = weight.shape[1] * groups
    if batch.shape[1] != expected:
        check_input_channels(
            batch.shape[1],
            expected,
            f"in_channels = weight.shape[1] * groups = {weight.shape[1]} * {groups}",
        )
    check_same_kind(batch, weight, bias)
    check_window_fits(batch.shape[2:], geometry)
    output = conv_batch(batch, weight, bias, geometry, groups, workspace_bytes)
    return output if batched else output.squeeze(0)


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
    autograd keeps the input, not a ``K`` times larger copy. Windows that tile the input (a 1x1
    kernel with stride 1, or kernel == stride without padding or dilation: ViT patches) are a
    rearrange and one matmul. Under ``torch.autocast`` it casts as torch's convs do.

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
            16 MiB on the CPU and 1 GiB on a GPU, or the size set by
            ``with unfoldconv.workspace(num_bytes):``). Smaller
            saves memory, larger makes fewer, larger matmuls; at least one sample is gathered
            at a time.

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
    check_tensor("input", input)
    weight = check_tensor("weight", weight)
    groups = check_int("groups", groups)
    workspace_bytes = check_workspace_bytes(workspace_bytes)
    d = conv_dim(weight, stride, padding, dilation)
    geometry = make_geometry(d, tuple(weight.shape[2:]), dilation, padding, stride)
    check_divisible("weight.shape[0] (C_out)", weight.shape[0], groups)
    check_bias(bias, (weight.shape[0],))
    return conv_prepared(input, weight, bias, geometry, groups, workspace_bytes)

"""``conv_transpose``: an N-d transposed convolution computed through the engine."""

from __future__ import annotations

import math

import torch

from unfoldconv import kernels
from unfoldconv._args import (
    IntOrTuple,
    check_bias,
    check_choice,
    check_divisible,
    check_input_channels,
    check_input_dims,
    check_int,
    check_same_kind,
    check_tensor,
    check_transposed_padding,
    check_weight_dim,
    checked_transposed_output_size,
    infer_dim,
    transposed_arguments,
)
from unfoldconv._autocast import follows_autocast
from unfoldconv._chunked import conv_precision
from unfoldconv._engine import col2im
from unfoldconv._geometry import Geometry
from unfoldconv.unfold_transpose import unfold_transpose

#: Engine routes: "fold" = matmul + fold (the default, measured faster), "unfold" =
#: unfold_transpose + matmul.
ROUTES = ("fold", "unfold")


def transpose_dim(
    weight: torch.Tensor,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    dilation: IntOrTuple,
) -> int:
    """``d`` of a transposed convolution: a tuple size length, else ``weight.dim() - 2``."""
    check_transposed_padding(padding)
    sizes = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "dilation": dilation,
    }
    d = infer_dim(sizes, default=weight.dim() - 2)
    layout = "(C_in, C_out / groups, *kernel_size)"
    check_weight_dim(weight, d, d + 2, layout, "weight.dim() - 2")
    return d


@conv_precision
def _fold_route(
    input: torch.Tensor,
    weight: torch.Tensor,
    out_size: tuple[int, ...],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> torch.Tensor:
    """matmul + fold: every input pixel spreads ``W^T x`` over its window of the output."""
    n, c_in, *spatial = input.shape
    c_out = weight.shape[1] * groups
    num_blocks = math.prod(spatial)
    pixels = input.reshape(n, groups, c_in // groups, num_blocks)  # (N, g, C_in/g, L_in)
    # (C_in, C_out/g, *kernel) -> (g, C_out/g*K, C_in/g)
    kernels = weight.reshape(groups, c_in // groups, -1).transpose(1, 2)
    columns = torch.matmul(kernels, pixels)  # (N, g, C_out/g*K, L_in)
    geometry = Geometry(kernel_size, dilation, tuple((p, p) for p in padding), stride)
    columns = columns.reshape(n, c_out * math.prod(kernel_size), num_blocks)  # (N, C_out*K, L_in)
    return col2im(columns, out_size, geometry)


@conv_precision
def _unfold_route(
    input: torch.Tensor,
    weight: torch.Tensor,
    out_size: tuple[int, ...],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> torch.Tensor:
    """unfold_transpose + matmul: gather the stride-dilated input, one matmul per group."""
    n, c_in = input.shape[:2]
    c_out = weight.shape[1] * groups
    columns = unfold_transpose(input, kernel_size, stride, padding, output_padding, dilation)
    rows = c_in // groups * math.prod(kernel_size)
    columns = columns.view(n, groups, rows, columns.shape[-1])  # (N, g, C_in/g*K, L_out)
    # (C_in, C_out/g, *kernel) -> (g, C_out/g, C_in/g*K)
    kernels = weight.reshape(groups, c_in // groups, c_out // groups, -1).transpose(1, 2)
    kernels = kernels.reshape(groups, c_out // groups, -1)
    output = torch.matmul(kernels, columns)  # (N, g, C_out/g, L_out)
    return output.reshape(n, c_out, *out_size)


def conv_transpose(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    route: str = "fold",
) -> torch.Tensor:
    """N-d transposed convolution (as ``F.conv_transpose1d/2d/3d``) for any number ``d`` of dims.

    Computed by the engine only, by default as matmul + fold: ``W^T x`` gives every input pixel's
    contribution to its output window, and :func:`unfoldconv.fold` sums the overlapping windows
    (deterministically). Its backward is an unfold + matmul. The other route,
    ``route="unfold"``, gathers :func:`unfoldconv.unfold_transpose` columns of the
    stride-dilated input and multiplies; it does ``prod(stride)`` times more multiply-adds
    (most against inserted zeros), so it is only kept for comparison.

    How ``d`` is found: the length of any tuple among the size arguments; with all-int sizes
    ``d = weight.dim() - 2``.

    Args:
        input: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
        weight: ``(C_in, C_out / groups, *kernel_size)`` (torch's transposed layout).
        bias: ``(C_out,)`` or ``None``.
        stride, padding, output_padding, dilation: as ``nn.ConvTransposeNd``, ints or d-tuples;
            ``output_padding`` must be smaller than stride or dilation.
        groups: independent channel groups.
        route: ``"fold"`` (default) or ``"unfold"``, see above.

    Shape:
        - Input: ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``
        - Output: ``(N, C_out, *out)``, ``out_i = (spatial_i - 1) * stride_i - 2 * padding_i +
          dilation_i * (kernel_size_i - 1) + output_padding_i + 1``

    Example:
        >>> x, w = torch.randn(2, 4, 5, 5, 5, 5), torch.randn(4, 3, 2, 2, 2, 2)  # d = 4
        >>> conv_transpose(x, w, stride=2).shape
        torch.Size([2, 3, 10, 10, 10, 10])
    """
    check_tensor("input", input)
    weight = check_tensor("weight", weight)
    groups = check_int("groups", groups)
    route = check_choice("route", route, ROUTES)
    d = transpose_dim(weight, stride, padding, output_padding, dilation)
    sizes = transposed_arguments(
        d, tuple(weight.shape[2:]), stride, padding, output_padding, dilation
    )
    check_divisible("weight.shape[0] (C_in)", weight.shape[0], groups)
    check_bias(bias, (weight.shape[1] * groups,))
    return conv_transpose_prepared(input, weight, bias, sizes, groups, route)


@follows_autocast
def conv_transpose_prepared(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sizes: tuple[tuple[int, ...], ...],
    groups: int,
    route: str = "fold",
) -> torch.Tensor:
    """:func:`conv_transpose` once its arguments are checked (the layers' entry).

    ``sizes`` is ``(kernel_size, stride, padding, output_padding, dilation)`` as d-tuples; only
    the checks that depend on ``input`` run here.
    """
    kernel, step, pad, out_pad, dil = sizes
    d = len(kernel)
    input = check_tensor("input", input)
    batched = check_input_dims(input, d)
    batch = input if batched else input.unsqueeze(0)
    check_input_channels(
        batch.shape[1], weight.shape[0], f"in_channels = weight.shape[0] = {weight.shape[0]}"
    )
    c_out = weight.shape[1] * groups
    check_same_kind(batch, weight, bias)
    out_size = checked_transposed_output_size(batch.shape[2:], kernel, step, pad, out_pad, dil)
    # fold covers exactly the input's positions when output_padding < stride in every dim;
    # output_padding in [stride, dilation) is only reachable by the gather route.
    fold_fits = all(op < s for op, s in zip(out_pad, step))
    geometry = Geometry(kernel, dil, tuple((p, p) for p in pad), step)  # of the conv it transposes
    if route == "fold" and kernels.conv_wanted(batch, weight, geometry):  # implicit GEMM (GPU)
        output = kernels.conv_transpose(batch, weight, bias, out_size, geometry, groups)
        return output if batched else output.squeeze(0)
    if route == "fold" and fold_fits:
        output = _fold_route(batch, weight, out_size, kernel, step, pad, dil, groups)
    else:
        output = _unfold_route(batch, weight, out_size, kernel, step, pad, out_pad, dil, groups)
    if bias is not None:
        output = output + bias.view(1, c_out, *([1] * d))
    return output if batched else output.squeeze(0)

"""``locally_connected``: a convolution whose kernel differs at every output position."""

from __future__ import annotations

import torch

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
    ChunkedLocallyConnected,
    locally_connected_chunks,
    needs_autograd,
    plain_locally_connected,
    takes_whole_batch,
)
from unfoldconv._engine import apply_function
from unfoldconv._geometry import Geometry


def locally_connected_dim(
    weight: torch.Tensor, stride: IntOrTuple, padding: Padding, dilation: IntOrTuple
) -> int:
    """``d``: the length of a tuple size argument, else ``(weight.dim() - 2) // 2``."""
    sizes = {"stride": stride, "padding": padding, "dilation": dilation}
    d = infer_dim(sizes, default=(weight.dim() - 2) // 2)
    layout = f"(*out_spatial, C_out, C_in / groups, *kernel_size), i.e. {2 * max(d, 1) + 2} dims,"
    check_weight_dim(weight, d, 2 * d + 2, layout, "(weight.dim() - 2) // 2")
    return d


def locally_connected_batch(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """Locally connected layer of a checked batch: chunked, or the plain whole-batch form where
    :func:`~unfoldconv._chunked.takes_whole_batch` says so (``torch.compile``, ``torch.func``)."""
    if takes_whole_batch(input):
        return plain_locally_connected(input, weight, bias, geometry, groups)
    if not needs_autograd(input, weight, bias):
        return locally_connected_chunks(input, weight, bias, geometry, groups, workspace_bytes)
    return apply_function(
        ChunkedLocallyConnected, input, weight, bias, geometry, groups, workspace_bytes
    )


@follows_autocast
def locally_connected_prepared(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """:func:`locally_connected` once its arguments are checked (the layers' entry): only the
    checks that depend on ``input`` run here, once."""
    d = geometry.dim
    input = check_tensor("input", input)
    batched = check_input_dims(input, d)
    batch = input if batched else input.unsqueeze(0)
    check_input_channels(
        batch.shape[1],
        weight.shape[d + 1] * groups,
        f"in_channels = weight.shape[{d + 1}] * groups = {weight.shape[d + 1]} * {groups}",
    )
    check_same_kind(batch, weight, bias)
    check_window_fits(batch.shape[2:], geometry)
    out_size = geometry.output_size(batch.shape[2:])
    if out_size != tuple(weight.shape[:d]):
        raise ValueError(
            f"input of spatial size {tuple(batch.shape[2:])} gives {out_size} output positions, "
            f"but weight has out_spatial={tuple(weight.shape[:d])} (weight.shape[:{d}]); the "
            f"input must have the spatial size the weight was made for"
        )
    output = locally_connected_batch(batch, weight, bias, geometry, groups, workspace_bytes)
    return output if batched else output.squeeze(0)


def locally_connected(
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
    """A convolution whose kernel differs at every output position (unshared weights).

    ``output[n, o, *p] = bias[o, *p] + sum_{c, k} weight[*p, o, c, *k] * window(input)[n, c, *k]``
    for each output position ``p``, with the windows of a convolution with the same ``stride``,
    ``padding``, ``dilation`` and ``groups``. Computed as one unfold and one batched matmul whose
    batch is the output positions. With the same kernel at every position it is
    :func:`unfoldconv.conv`.

    How ``d`` is found: the length of any tuple among ``stride``, ``padding``, ``dilation``;
    with all-int sizes ``d = (weight.dim() - 2) // 2``.

    Args:
        input: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``; ``spatial`` must give
            exactly the weight's ``out_spatial`` windows.
        weight: ``(*out_spatial, C_out, C_in / groups, *kernel_size)``.
        bias: ``(C_out, *out_spatial)`` or ``None``.
        stride, padding, dilation, groups: as :func:`unfoldconv.conv` (``padding`` may be
            ``"same"`` / ``"valid"``).
        workspace_bytes: keyword-only; column workspace of one batch chunk in bytes (see
            :func:`unfoldconv.conv`). Forward keeps only the input and the weight for backward.

    Shape:
        - Input: ``(N, C_in, *spatial)``
        - Output: ``(N, C_out, *out_spatial)`` with ``out_spatial_i = (spatial_i + 2 * padding_i
          - dilation_i * (kernel_size_i - 1) - 1) // stride_i + 1``

    Example:
        >>> w = torch.randn(6, 6, 8, 4, 3, 3)  # 6x6 positions, 8 out, 4 in, 3x3 kernels
        >>> locally_connected(torch.randn(2, 4, 8, 8), w).shape
        torch.Size([2, 8, 6, 6])
    """
    check_tensor("input", input)
    weight = check_tensor("weight", weight)
    groups = check_int("groups", groups)
    workspace_bytes = check_workspace_bytes(workspace_bytes)
    d = locally_connected_dim(weight, stride, padding, dilation)
    geometry = make_geometry(d, tuple(weight.shape[d + 2 :]), dilation, padding, stride)
    c_out = weight.shape[d]
    check_divisible("weight.shape[d] (C_out)", c_out, groups)
    check_bias(bias, (c_out, *weight.shape[:d]))
    return locally_connected_prepared(input, weight, bias, geometry, groups, workspace_bytes)

"""``locally_connected``: a convolution whose kernel differs at every output position."""

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
from unfoldconv._chunked import batch_chunks, check_workspace_bytes, chunk_size
from unfoldconv._engine import Unfold, gather, scatter
from unfoldconv._layer_args import (
    check_bias,
    check_divisible,
    check_groups,
    check_input_channels,
    check_same_kind,
    follows_autocast,
)


def locally_connected_dim(
    weight: torch.Tensor, stride: IntOrTuple, padding: Padding, dilation: IntOrTuple
) -> int:
    """``d``: the length of a tuple size argument, else ``(weight.dim() - 2) // 2``."""
    sizes = {"stride": stride, "padding": padding, "dilation": dilation}
    d = infer_dim(sizes, default=(weight.dim() - 2) // 2)
    if weight.dim() != 2 * d + 2 or d < 1:
        raise ValueError(
            f"weight must be (*out_spatial, C_out, C_in / groups, *kernel_size) with "
            f"{max(d, 1)} spatial dim(s), i.e. {2 * max(d, 1) + 2} dims (d is the length of the "
            f"tuple size arguments, else (weight.dim() - 2) // 2), got weight of shape "
            f"{tuple(weight.shape)}"
        )
    return d


def plain_locally_connected(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """Whole-batch unfold + batched matmul from differentiable ops (double backward, compile)."""
    d = geometry.dim
    n = input.shape[0]
    out_size = tuple(weight.shape[:d])
    num_blocks = math.prod(out_size)
    c_out = weight.shape[d]
    columns = Unfold.apply(input, geometry)  # (N, C*K, L)
    # (N, g, C/g*K, L) -> (L, g, N, C/g*K), contiguous so that bmm gets plain matrices
    rows = input.shape[1] * geometry.kernel_numel // groups  # C/g*K
    columns = columns.view(n, groups, rows, num_blocks).permute(3, 1, 0, 2).contiguous()
    kernels = weight.reshape(num_blocks, groups, c_out // groups, -1)  # (L, g, C_out/g, C/g*K)
    output = torch.matmul(columns, kernels.transpose(2, 3))  # (L, g, N, C_out/g)
    output = output.permute(2, 1, 3, 0).reshape(n, c_out, *out_size)  # -> (N, C_out, *out)
    if bias is not None:
        output = output + bias  # bias (C_out, *out) broadcasts over N
    return output


class ChunkedLocallyConnected(torch.autograd.Function):
    """Locally connected layer in batch chunks: saves only the input and the weight.

    Per chunk of ``n`` samples: gather the columns into a reused workspace, lay them out as
    ``(L, g, n, C/g*K)`` (a second reused workspace) and do one ``bmm`` whose batch is the
    ``L * g`` (position, group) pairs. Backward regathers each chunk and accumulates the weight
    gradient with one ``baddbmm`` per chunk.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, geometry, groups, budget):
        ctx.geometry, ctx.groups, ctx.budget = geometry, groups, budget
        ctx.save_for_backward(input, weight)
        d = geometry.dim
        n, channels = input.shape[:2]
        out_size = tuple(weight.shape[:d])
        num_blocks = math.prod(out_size)
        c_out = weight.shape[d]
        rows = channels * geometry.kernel_numel  # C*K
        # (L*g, C_out/g, C/g*K) -> (L*g, C/g*K, C_out/g)
        kernels = weight.reshape(num_blocks * groups, c_out // groups, -1).transpose(1, 2)
        chunk = chunk_size(n, rows * num_blocks * input.element_size(), budget)
        gathered = input.new_empty(chunk * rows * num_blocks)
        by_position = input.new_empty(chunk * rows * num_blocks)
        output = input.new_empty((n, c_out, num_blocks))
        for start, stop in batch_chunks(n, chunk):
            size = stop - start
            columns = _position_major(
                input[start:stop], geometry, groups, gathered, by_position
            )  # (L*g, n, C/g*K)
            result = torch.bmm(columns, kernels)  # (L*g, n, C_out/g)
            # (L, g, n, C_out/g) -> (n, g, C_out/g, L)
            output[start:stop].view(size, groups, c_out // groups, num_blocks).copy_(
                result.view(num_blocks, groups, size, c_out // groups).permute(2, 1, 3, 0)
            )
        output = output.view(n, c_out, *out_size)
        if bias is not None:
            output.add_(bias)  # bias (C_out, *out) broadcasts over N
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        geometry, groups = ctx.geometry, ctx.groups
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_bias = grad_output.sum(0) if need_bias else None
        if torch.is_grad_enabled():  # create_graph: differentiate the plain, differentiable form
            wanted = [t for t, need in ((input, need_input), (weight, need_weight)) if need]
            output = plain_locally_connected(input, weight, None, geometry, groups)
            grads = iter(torch.autograd.grad(output, wanted, grad_output, create_graph=True))
            return (
                next(grads) if need_input else None,
                next(grads) if need_weight else None,
                grad_bias,
                None,
                None,
                None,
            )
        d = geometry.dim
        n, channels = input.shape[:2]
        num_blocks = math.prod(weight.shape[:d])
        c_out = weight.shape[d]
        rows = channels * geometry.kernel_numel
        kernels = weight.reshape(num_blocks * groups, c_out // groups, -1)  # (L*g, C_out/g, C/g*K)
        chunk = chunk_size(n, rows * num_blocks * input.element_size(), ctx.budget)
        gathered = input.new_empty(chunk * rows * num_blocks)
        by_position = input.new_empty(chunk * rows * num_blocks)
        grad_weight = weight.new_zeros(kernels.shape) if need_weight else None
        grad_input = input.new_empty(input.shape) if need_input else None
        go = grad_output.reshape(n, groups, c_out // groups, num_blocks)
        for start, stop in batch_chunks(n, chunk):
            size = stop - start
            # (n, g, C_out/g, L) -> (L*g, n, C_out/g)
            # contiguous: bmm on matrices that are neither row- nor column-major is slow
            go_chunk = go[start:stop].permute(3, 1, 0, 2).contiguous()
            go_chunk = go_chunk.view(-1, size, c_out // groups)
            if need_weight:
                columns = _position_major(
                    input[start:stop], geometry, groups, gathered, by_position
                )
                # (L*g, C_out/g, n) @ (L*g, n, C/g*K) summed into (L*g, C_out/g, C/g*K)
                grad_weight.baddbmm_(go_chunk.transpose(1, 2), columns)
            if need_input:
                grad_columns = torch.bmm(go_chunk, kernels)  # (L*g, n, C/g*K)
                # (L, g, n, C/g*K) -> (n, g, C/g*K, L)
                target = gathered[: size * rows * num_blocks].view(
                    size, groups, rows // groups, num_blocks
                )
                target.copy_(grad_columns.view(num_blocks, groups, size, -1).permute(2, 1, 3, 0))
                grad_input[start:stop] = scatter(
                    target.view(size, rows, num_blocks), input.shape[2:], geometry
                )
        if need_weight:
            grad_weight = grad_weight.view(weight.shape)
        return grad_input, grad_weight, grad_bias, None, None, None


def _position_major(
    input: torch.Tensor,
    geometry: Geometry,
    groups: int,
    gathered: torch.Tensor,
    by_position: torch.Tensor,
) -> torch.Tensor:
    """Columns of ``input`` (n samples) as ``(L*g, n, C/g*K)``, written into the workspaces."""
    n = input.shape[0]
    columns = gather(
        input, geometry, out=gathered[: _columns_numel(input, geometry)]
    )  # (n, C*K, L)
    rows, num_blocks = columns.shape[1:]
    size = n * rows * num_blocks
    target = by_position[:size].view(num_blocks, groups, n, rows // groups)
    # (n, g, C/g*K, L) -> (L, g, n, C/g*K)
    target.copy_(columns.view(n, groups, rows // groups, num_blocks).permute(3, 1, 0, 2))
    return target.view(num_blocks * groups, n, rows // groups)


def locally_connected_batch(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """Locally connected layer of a checked batch: chunked, or plain under ``torch.compile``."""
    if input.shape[0] == 0 or torch.compiler.is_compiling():
        return plain_locally_connected(input, weight, bias, geometry, groups)
    return ChunkedLocallyConnected.apply(input, weight, bias, geometry, groups, workspace_bytes)


@follows_autocast
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
    input = check_tensor("input", input)
    weight = check_tensor("weight", weight)
    groups = check_groups(groups)
    check_workspace_bytes(workspace_bytes)
    d = locally_connected_dim(weight, stride, padding, dilation)
    geometry = make_geometry(d, tuple(weight.shape[d + 2 :]), dilation, padding, stride)
    batched = check_input_dims(input, d)
    batch = input if batched else input.unsqueeze(0)
    c_out = weight.shape[d]
    check_divisible("weight.shape[d] (C_out)", c_out, groups)
    check_input_channels(
        batch.shape[1],
        weight.shape[d + 1] * groups,
        f"weight.shape[{d + 1}] * groups = {weight.shape[d + 1]} * {groups}",
    )
    check_bias(bias, (c_out, *weight.shape[:d]))
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


def _columns_numel(input: torch.Tensor, geometry: Geometry) -> int:
    n, channels = input.shape[:2]
    return n * channels * geometry.kernel_numel * math.prod(geometry.output_size(input.shape[2:]))

"""Convolution as unfold + matmul, gathered in bounded batch chunks into one reused workspace.

Why chunks: the columns of a whole batch are ``K`` times the input. Building them at once costs
a fresh, page-faulted buffer on every call, and autograd would keep it alive until backward.
Here the forward keeps only the input; it gathers ``chunk`` samples at a time into a workspace
of at most :data:`DEFAULT_WORKSPACE_BYTES` (or the caller's ``workspace_bytes``, or the block of
a ``with workspace(num_bytes):``), multiplies, and reuses the same workspace for the next chunk.
Backward gathers each chunk again (for the weight gradient: the columns are copied sample-inner
into a second workspace of the same size, so that one GEMM per chunk contracts over samples and
positions) and reuses the workspace once more for the input gradient's columns, which it folds
back (``scatter``). The workspace stays in cache, and the peak memory of forward + backward is
the input, the output, their gradients and two workspaces.

When backward itself must be differentiable (``create_graph=True``, so ``torch.is_grad_enabled``
inside backward) it takes the plain path of differentiable engine ops instead, so every order of
gradient exists.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from unfoldconv._args import Geometry
from unfoldconv._engine import Fold, Unfold, gather, scatter

#: Default size of the column workspace of one chunk, in bytes (the memory/speed knob).
DEFAULT_WORKSPACE_BYTES = 16 * 2**20

_workspace_bytes = [DEFAULT_WORKSPACE_BYTES]


def default_workspace_bytes() -> int:
    """The workspace size used when a call or a layer does not set ``workspace_bytes``."""
    return _workspace_bytes[0]


@contextlib.contextmanager
def workspace(num_bytes: int) -> Iterator[None]:
    """Context manager: use ``num_bytes`` as the default chunk workspace inside the block.

    Example:
        >>> import torch, unfoldconv
        >>> x, w = torch.randn(8, 3, 16, 16), torch.randn(4, 3, 3, 3)
        >>> with unfoldconv.workspace(4 * 2**20):  # smaller chunks, less memory
        ...     y = unfoldconv.conv(x, w, padding=1)
        >>> y.shape
        torch.Size([8, 4, 16, 16])
    """
    check_workspace_bytes(num_bytes)
    previous = _workspace_bytes[0]
    _workspace_bytes[0] = num_bytes
    try:
        yield
    finally:
        _workspace_bytes[0] = previous


def check_workspace_bytes(num_bytes: object) -> None:
    if num_bytes is None:
        return
    if not isinstance(num_bytes, int) or isinstance(num_bytes, bool) or num_bytes < 1:
        raise ValueError(
            f"workspace_bytes must be a positive int, got workspace_bytes={num_bytes!r}"
        )


def chunk_size(batch: int, sample_bytes: int, budget: int | None) -> int:
    """How many samples' columns fit into the workspace budget (at least one)."""
    budget = default_workspace_bytes() if budget is None else budget
    return max(1, min(batch, budget // max(1, sample_bytes)))


def batch_chunks(batch: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, batch, chunk):
        yield start, min(batch, start + chunk)


def plain_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """Whole-batch unfold + matmul from differentiable engine ops (double backward, compile)."""
    n = input.shape[0]
    out_size = geometry.output_size(input.shape[2:])
    num_blocks = math.prod(out_size)
    columns = Unfold.apply(input, geometry)  # (N, C*K, L)
    rows = input.shape[1] * geometry.kernel_numel // groups  # C/g*K
    columns = columns.view(n, groups, rows, num_blocks)  # (N, g, C/g*K, L)
    kernels = weight.reshape(groups, weight.shape[0] // groups, rows)  # (g, C_out/g, C/g*K)
    output = torch.matmul(kernels, columns)  # (N, g, C_out/g, L)
    output = output.reshape(n, weight.shape[0], *out_size)
    if bias is not None:
        output = output + bias.view(1, -1, *([1] * geometry.dim))
    return output


def _conv_gradients(
    input: torch.Tensor,
    weight: torch.Tensor,
    grad_output: torch.Tensor,
    geometry: Geometry,
    groups: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable (grad_input, grad_weight) of ``plain_conv`` without the bias."""
    n = input.shape[0]
    c_out = weight.shape[0]
    go = grad_output.reshape(n, groups, c_out // groups, -1)  # (N, g, C_out/g, L)
    kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
    columns = Unfold.apply(input, geometry)
    rows = input.shape[1] * geometry.kernel_numel  # C*K
    columns = columns.view(n, groups, rows // groups, go.shape[-1])  # (N, g, C/g*K, L)
    grad_weight = torch.einsum("ngol,ngkl->gok", go, columns).reshape(weight.shape)
    grad_columns = torch.matmul(kernels.transpose(1, 2), go)  # (N, g, C/g*K, L)
    grad_columns = grad_columns.reshape(n, rows, go.shape[-1])  # (N, C*K, L)
    grad_input = Fold.apply(grad_columns, input.shape[2:], geometry)
    return grad_input, grad_weight


class ChunkedConv(torch.autograd.Function):
    """``conv`` of an already padded-by-mode input, chunk by chunk (see the module docstring).

    Saves only ``input`` and ``weight`` for backward.
    """

    @staticmethod
    def forward(
        ctx,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        geometry: Geometry,
        groups: int,
        budget: int | None,
    ) -> torch.Tensor:
        ctx.geometry, ctx.groups, ctx.budget = geometry, groups, budget
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, weight)

        n, channels = input.shape[:2]
        c_out = weight.shape[0]
        out_size = geometry.output_size(input.shape[2:])
        num_blocks = math.prod(out_size)
        rows = channels * geometry.kernel_numel  # C*K
        chunk = chunk_size(n, rows * num_blocks * input.element_size(), budget)
        workspace = input.new_empty(chunk * rows * num_blocks)
        kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
        output = input.new_empty((n, c_out, num_blocks))
        for start, stop in batch_chunks(n, chunk):
            size = stop - start
            columns = gather(input[start:stop], geometry, out=workspace[: size * rows * num_blocks])
            columns = columns.view(size, groups, rows // groups, num_blocks)  # (n, g, C/g*K, L)
            target = output[start:stop].view(size, groups, c_out // groups, num_blocks)
            torch.matmul(kernels, columns, out=target)  # (n, g, C_out/g, L)
        if bias is not None:
            output.add_(bias.view(1, c_out, 1))
        return output.view(n, c_out, *out_size)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        input, weight = ctx.saved_tensors
        geometry, groups = ctx.geometry, ctx.groups
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_bias = None
        if need_bias:
            grad_bias = grad_output.sum(dim=(0, *range(2, grad_output.dim())))
        if torch.is_grad_enabled():  # create_graph: build the gradients from differentiable ops
            grad_input, grad_weight = _conv_gradients(input, weight, grad_output, geometry, groups)
            return (
                grad_input if need_input else None,
                grad_weight if need_weight else None,
                grad_bias,
                None,
                None,
                None,
            )

        n, channels = input.shape[:2]
        spatial = input.shape[2:]
        c_out = weight.shape[0]
        num_blocks = math.prod(grad_output.shape[2:])
        rows = channels * geometry.kernel_numel
        go = grad_output.contiguous().view(n, groups, c_out // groups, num_blocks)
        kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
        chunk = chunk_size(n, rows * num_blocks * input.element_size(), ctx.budget)
        workspace = input.new_empty(chunk * rows * num_blocks)
        transposed = input.new_empty(workspace.numel()) if need_weight else None
        grad_input = input.new_empty(input.shape) if need_input else None
        grad_weight = weight.new_zeros(kernels.shape) if need_weight else None
        for start, stop in batch_chunks(n, chunk):
            size = stop - start
            buffer = workspace[: size * rows * num_blocks]
            if need_weight:
                columns = gather(input[start:stop], geometry, out=buffer)
                # one GEMM per chunk, contracting over (sample, position): lay both operands out
                # sample-inner, the columns in a second reused workspace
                # (n, g, C/g*K, L) -> (g, C/g*K, n, L)
                by_row = transposed[: size * rows * num_blocks].view(
                    groups, rows // groups, size, num_blocks
                )
                by_row.copy_(
                    columns.view(size, groups, rows // groups, num_blocks).permute(1, 2, 0, 3)
                )
                # (n, g, C_out/g, L) -> (g, C_out/g, n*L)
                go_rows = go[start:stop].permute(1, 2, 0, 3).reshape(groups, -1, size * num_blocks)
                # (g, C_out/g, n*L) @ (g, n*L, C/g*K) summed into (g, C_out/g, C/g*K)
                grad_weight.baddbmm_(
                    go_rows, by_row.view(groups, rows // groups, size * num_blocks).transpose(1, 2)
                )
            if need_input:
                grad_columns = buffer.view(size, groups, rows // groups, num_blocks)
                torch.matmul(kernels.transpose(1, 2), go[start:stop], out=grad_columns)
                grad_input[start:stop] = scatter(
                    grad_columns.view(size, rows, num_blocks), spatial, geometry
                )
        if need_weight:
            grad_weight = grad_weight.view(weight.shape)
        return grad_input, grad_weight, grad_bias, None, None, None

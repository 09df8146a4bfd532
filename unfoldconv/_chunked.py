"""The two chunked engines: convolution and locally connected layer as unfold + matmul.

Why chunks: the columns of a whole batch are ``K`` times the input. Building them at once costs
a fresh, page-faulted buffer on every call, and autograd would keep it alive until backward.
Here the forward keeps only the input and the weight; it gathers ``chunk`` samples at a time into
a workspace of at most the device's default (:mod:`unfoldconv.memory`: 16 MiB on the CPU, 1 GiB
on a GPU; or the caller's ``workspace_bytes``, or the size set by
``with unfoldconv.workspace(num_bytes):``), multiplies, and reuses the same workspace for the
next chunk. Backward gathers each chunk again (for the weight gradient) and reuses the
workspace once more for the input gradient's columns, which it folds back (``scatter``). The
peak memory of forward + backward is the input, the output, their gradients and two
workspaces.

- :class:`ChunkedConv`: one kernel shared by every output position, one GEMM per chunk.
- :class:`ChunkedLocallyConnected`: one kernel per output position, one ``bmm`` per chunk whose
  batch is the (position, group) pairs.

Double backward, one rule for both: when backward itself must be differentiable
(``create_graph=True``, so ``torch.is_grad_enabled()`` inside backward), the input and weight
gradients are those of the *plain* form (whole-batch :class:`~unfoldconv._engine.Im2Col` +
matmul, every op differentiable), taken with ``torch.autograd.grad`` (see
:func:`differentiable_gradients`); the bias gradient is a sum in both cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from unfoldconv._engine import gather, im2col, scatter
from unfoldconv._geometry import Geometry
from unfoldconv.memory import default_workspace_bytes


def chunk_size(
    batch: int, sample_bytes: int, budget: int | None, device: torch.device | None = None
) -> int:
    """How many samples' columns fit into the workspace budget (at least one).

    ``budget=None`` takes the default of ``device`` (see :mod:`unfoldconv.memory`).
    """
    budget = default_workspace_bytes(device) if budget is None else budget
    return max(1, min(batch, budget // max(1, sample_bytes)))


def batch_chunks(batch: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``chunk`` samples."""
    for start in range(0, batch, chunk):
        yield start, min(batch, start + chunk)


def differentiable_gradients(
    plain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input: torch.Tensor,
    weight: torch.Tensor,
    grad_output: torch.Tensor,
    needs: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(grad_input, grad_weight)`` of ``plain(input, weight)`` as differentiable tensors.

    The double-backward rule of both chunked engines. ``needs`` says which of the two are
    wanted; with neither (only the bias needs a gradient) nothing is differentiated.
    """
    wanted = [tensor for tensor, need in zip((input, weight), needs) if need]
    if not wanted:
        return None, None
    output = plain(input, weight)
    grads = iter(torch.autograd.grad(output, wanted, grad_output, create_graph=True))
    return tuple(next(grads) if need else None for need in needs)


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
    columns = im2col(input, geometry)  # (N, C*K, L)
    rows = input.shape[1] * geometry.kernel_numel // groups  # C/g*K
    columns = columns.view(n, groups, rows, num_blocks)  # (N, g, C/g*K, L)
    kernels = weight.reshape(groups, weight.shape[0] // groups, rows)  # (g, C_out/g, C/g*K)
    output = torch.matmul(kernels, columns)  # (N, g, C_out/g, L)
    output = output.reshape(n, weight.shape[0], *out_size)
    if bias is not None:
        output = output + bias.view(1, -1, *([1] * geometry.dim))
    return output


def takes_whole_batch(input: torch.Tensor) -> bool:
    """Whether the chunked engines give way to their plain whole-batch form (``plain_*``).

    The one routing rule of both engines: for an empty batch, while ``torch.compile`` traces
    (the compiler plans memory itself), and inside ``torch.func`` transforms (``vmap``,
    ``grad``, ``jacrev``, ``jvp``: they need every op to be a transformable one, and the chunked
    loops write into ``out=`` buffers). The plain form is built from
    :class:`~unfoldconv._engine.Im2Col` and matmul, which carry the ``torch.func`` rules.
    """
    return (
        input.shape[0] == 0
        or torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
    )


def needs_autograd(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd must record the op: grad mode is on and some operand requires grad.

    Without it the chunked engines run their forward directly, skipping the autograd.Function.
    """
    return torch.is_grad_enabled() and any(
        tensor is not None and tensor.requires_grad for tensor in tensors
    )


def conv_chunks(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    budget: int | None,
) -> torch.Tensor:
    """The forward of :class:`ChunkedConv`: gather a chunk, one GEMM, next chunk."""
    n, channels = input.shape[:2]
    c_out = weight.shape[0]
    out_size = geometry.output_size(input.shape[2:])
    num_blocks = math.prod(out_size)
    rows = channels * geometry.kernel_numel  # C*K
    kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
    chunk = chunk_size(n, rows * num_blocks * input.element_size(), budget, input.device)
    if chunk == n:  # one chunk: no workspace to reuse
        columns = gather(input, geometry).view(n, groups, rows // groups, num_blocks)
        output = torch.matmul(kernels, columns).view(n, c_out, num_blocks)  # (N, C_out, L)
    else:
        workspace = input.new_empty(chunk * rows * num_blocks)
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


class ChunkedConv(torch.autograd.Function):
    """``conv`` of an already padded-by-mode input, chunk by chunk (see the module docstring).

    Saves only ``input`` and ``weight`` for backward.
    """

    @staticmethod
    def forward(
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        geometry: Geometry,
        groups: int,
        budget: int | None,
    ) -> torch.Tensor:
        return conv_chunks(input, weight, bias, geometry, groups, budget)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, weight, _, ctx.geometry, ctx.groups, ctx.budget = inputs
        ctx.save_for_backward(input, weight)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        input, weight = ctx.saved_tensors
        geometry, groups = ctx.geometry, ctx.groups
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_bias = None
        if need_bias:
            grad_bias = grad_output.sum(dim=(0, *range(2, grad_output.dim())))
        if torch.is_grad_enabled():  # create_graph: see the module docstring

            def plain(input, weight):
                return plain_conv(input, weight, None, geometry, groups)

            grad_input, grad_weight = differentiable_gradients(
                plain, input, weight, grad_output, (need_input, need_weight)
            )
            return grad_input, grad_weight, grad_bias, None, None, None

        n, channels = input.shape[:2]
        spatial = input.shape[2:]
        c_out = weight.shape[0]
        num_blocks = math.prod(grad_output.shape[2:])
        rows = channels * geometry.kernel_numel
        go = grad_output.contiguous().view(n, groups, c_out // groups, num_blocks)
        kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
        chunk = chunk_size(n, rows * num_blocks * input.element_size(), ctx.budget, input.device)
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
    columns = im2col(input, geometry)  # (N, C*K, L)
    # (N, g, C/g*K, L) -> (L, g, N, C/g*K), contiguous so that bmm gets plain matrices
    rows = input.shape[1] * geometry.kernel_numel // groups  # C/g*K
    columns = columns.view(n, groups, rows, num_blocks).permute(3, 1, 0, 2).contiguous()
    kernels = weight.reshape(num_blocks, groups, c_out // groups, -1)  # (L, g, C_out/g, C/g*K)
    output = torch.matmul(columns, kernels.transpose(2, 3))  # (L, g, N, C_out/g)
    output = output.permute(2, 1, 3, 0).reshape(n, c_out, *out_size)  # -> (N, C_out, *out)
    if bias is not None:
        output = output + bias  # bias (C_out, *out) broadcasts over N
    return output


def locally_connected_chunks(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    budget: int | None,
) -> torch.Tensor:
    """The forward of :class:`ChunkedLocallyConnected`: gather a chunk, one ``bmm``, next chunk."""
    d = geometry.dim
    n, channels = input.shape[:2]
    out_size = tuple(weight.shape[:d])
    num_blocks = math.prod(out_size)
    c_out = weight.shape[d]
    rows = channels * geometry.kernel_numel  # C*K
    # (L*g, C_out/g, C/g*K) -> (L*g, C/g*K, C_out/g)
    kernels = weight.reshape(num_blocks * groups, c_out // groups, -1).transpose(1, 2)
    chunk = chunk_size(n, rows * num_blocks * input.element_size(), budget, input.device)
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


class ChunkedLocallyConnected(torch.autograd.Function):
    """Locally connected layer in batch chunks: saves only the input and the weight.

    Per chunk of ``n`` samples: gather the columns into a reused workspace, lay them out as
    ``(L, g, n, C/g*K)`` (a second reused workspace) and do one ``bmm`` whose batch is the
    ``L * g`` (position, group) pairs. Backward regathers each chunk and accumulates the weight
    gradient with one ``baddbmm`` per chunk.
    """

    @staticmethod
    def forward(input, weight, bias, geometry, groups, budget):
        return locally_connected_chunks(input, weight, bias, geometry, groups, budget)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        input, weight, _, ctx.geometry, ctx.groups, ctx.budget = inputs
        ctx.save_for_backward(input, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        geometry, groups = ctx.geometry, ctx.groups
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_bias = grad_output.sum(0) if need_bias else None
        if torch.is_grad_enabled():  # create_graph: see the module docstring

            def plain(input, weight):
                return plain_locally_connected(input, weight, None, geometry, groups)

            grad_input, grad_weight = differentiable_gradients(
                plain, input, weight, grad_output, (need_input, need_weight)
            )
            return grad_input, grad_weight, grad_bias, None, None, None
        d = geometry.dim
        n, channels = input.shape[:2]
        num_blocks = math.prod(weight.shape[:d])
        c_out = weight.shape[d]
        rows = channels * geometry.kernel_numel
        kernels = weight.reshape(num_blocks * groups, c_out // groups, -1)  # (L*g, C_out/g, C/g*K)
        chunk = chunk_size(n, rows * num_blocks * input.element_size(), ctx.budget, input.device)
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


def _columns_numel(input: torch.Tensor, geometry: Geometry) -> int:
    n, channels = input.shape[:2]
    return n * channels * geometry.kernel_numel * math.prod(geometry.output_size(input.shape[2:]))

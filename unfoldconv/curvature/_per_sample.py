"""Per-sample gradients of a convolution and their norms (DP-SGD), chunk by chunk.

The weight gradient of sample ``n`` in group ``g`` is ``G = O Uᵀ`` (``O`` the output gradient
``(C_out/g, L)``, ``U`` the columns ``(D, L)``). :func:`per_sample_grad` gathers the columns of
a chunk of samples into the reused workspace and does one batched GEMM over (sample, group).

:func:`per_sample_grad_norm` picks per layer the cheaper of two routes (multiply-adds per sample
and group, ``C = C_out / groups``):

- direct: ``G`` per chunk, then its squared norm: ``C * D * L``;
- ghost norm: ``||G||² = Σ_{l,l'} (o_l·o_l')(u_l·u_l') = <OᵀO, UᵀU>``: two Gram matrices,
  ``L² (C + D)``, without ever forming ``G``.

The ghost route is taken when ``L * (C + D) < C * D`` (the late, small-image layers of a CNN,
tokens of a ViT with wide channels) and the plan has whole samples (a slab of positions would
need the Gram entries between slabs).
"""

from __future__ import annotations

import torch

from unfoldconv._args import IntOrTuple, Padding
from unfoldconv._chunked import column_chunks, plan_chunks
from unfoldconv.curvature._checks import (
    ConvInput,
    accumulation_dtype,
    check_flag,
    check_grad_output,
    check_workspace,
    conv_input,
)


def _prepare(
    input, grad_output, kernel_size, stride, padding, dilation, groups, padding_mode,
    transposed, output_padding, bias, workspace_bytes,
):  # fmt: skip
    bias = check_flag("bias", bias)
    workspace_bytes = check_workspace(workspace_bytes)
    conv = conv_input(
        input, kernel_size, stride, padding, dilation, groups, padding_mode, transposed,
        output_padding,
    )  # fmt: skip
    go = check_grad_output(grad_output, conv)
    n, c_out = go.shape[:2]
    go = go.reshape(n, conv.groups, c_out // conv.groups, conv.num_positions)  # (N, g, C, L)
    return conv, go, bias, workspace_bytes


def per_sample_grad(
    input: torch.Tensor,
    grad_output: torch.Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    transposed: bool = False,
    output_padding: IntOrTuple = 0,
    bias: bool = False,
    workspace_bytes: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-sample weight (and bias) gradients of a convolution, without the whole columns.

    Equal to ``torch.func.vmap(torch.func.grad(loss))`` of the convolution, for the output
    gradient ``grad_output``. Chunk by chunk (the conv layers' workspace): the columns of a
    chunk ``(n, g, D, l)`` and its output gradient ``(n, g, C_out/g, l)`` make one batched GEMM
    into ``(n, g, C_out/g, D)``; slabs of positions (one sample's columns over the workspace)
    add up. The bias gradients are the position sums of ``grad_output``. Peak memory: the result
    and the workspace. An unbatched input (and ``grad_output``) gives the one sample's gradient
    with no leading ``N``.

    Args:
        input: the layer's input ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
        grad_output: the gradient of the loss with respect to the layer's output,
            ``(N, C_out, *out)`` (or unbatched).
        kernel_size, stride, padding, dilation, groups, padding_mode, transposed,
            output_padding: the layer's, as :func:`kfac_input_factor`.
        bias: also return the bias gradients.
        workspace_bytes: the column workspace in bytes (``None``: the device's default).

    Shape:
        - Output: ``(N, *weight.shape)`` (weight ``(C_out, C_in / groups, *kernel)``, transposed
          ``(C_in, C_out / groups, *kernel)``); with ``bias=True`` also ``(N, C_out)``.

    Example:
        >>> x, go = torch.randn(4, 6, 8, 8), torch.randn(4, 10, 8, 8)
        >>> w_grads, b_grads = per_sample_grad(x, go, 3, padding=1, groups=2, bias=True)
        >>> w_grads.shape, b_grads.shape
        (torch.Size([4, 10, 3, 3, 3]), torch.Size([4, 10]))
    """
    conv, go, bias, workspace_bytes = _prepare(
        input, grad_output, kernel_size, stride, padding, dilation, groups, padding_mode,
        transposed, output_padding, bias, workspace_bytes,
    )  # fmt: skip
    grads = weight_grads(conv, go, workspace_bytes)  # (N, g, C_out/g, D)
    n, g, c = grads.shape[:3]
    kernel = conv.geometry.kernel_size
    c_in = conv.batch.shape[1]
    if transposed:  # (N, g, C_out/g, C_in/g, *k) -> (N, g, C_in/g, C_out/g, *k)
        grads = grads.view(n, g, c, c_in // g, *kernel).transpose(2, 3)
        grads = grads.reshape(n, c_in, c, *kernel)
    else:
        grads = grads.view(n, g * c, c_in // g, *kernel)
    bias_grads = go.sum(-1).reshape(n, g * c)
    if not conv.batched:
        grads, bias_grads = grads[0], bias_grads[0]
    return (grads, bias_grads) if bias else grads


def weight_grads(conv: ConvInput, go: torch.Tensor, workspace_bytes: int | None) -> torch.Tensor:
    """``(N, g, C_out/g, D)``: every sample's ``O Uᵀ`` per group, chunk by chunk."""
    batch, groups, rows = conv.batch, conv.groups, conv.rows
    n, _, c = go.shape[:3]
    grads = batch.new_empty((n, groups, c, rows))
    for chunk, columns in column_chunks(batch, conv.geometry, workspace_bytes):
        size, length = columns.shape[0], columns.shape[2]
        u = columns.view(size, groups, rows, length)  # (n, g, D, l)
        o = go[chunk.samples, :, :, chunk.positions]  # (n, g, C, l)
        target = grads[chunk.samples]
        if chunk.whole or chunk.positions.start == 0:  # whole samples, or a first slab
            torch.matmul(o, u.transpose(2, 3), out=target)  # (n, g, C, D)
        else:  # the next slab of the same sample adds to it
            target.add_(torch.matmul(o, u.transpose(2, 3)))
    return grads


def ghost_applies(conv: ConvInput, c_out_per_group: int) -> bool:
    """The cost rule of :func:`per_sample_grad_norm`: ``L (C + D) < C D`` (see the module)."""
    length, rows = conv.num_positions, conv.rows
    return length * (c_out_per_group + rows) < c_out_per_group * rows


def per_sample_grad_norm(
    input: torch.Tensor,
    grad_output: torch.Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    transposed: bool = False,
    output_padding: IntOrTuple = 0,
    bias: bool = False,
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """The L2 norm of each sample's whole gradient (weight, and bias with ``bias=True``).

    What DP-SGD clips by. Per layer the cheaper route by multiply-adds (``C = C_out / groups``,
    ``D = C_in / groups * K``, ``L`` output positions): the "ghost norm"
    ``||G||² = Σ_{l,l'} (o_l·o_l')(u_l·u_l')`` from two ``L x L`` Gram matrices when
    ``L (C + D) < C D`` and a chunk holds whole samples, never forming the gradients; otherwise
    the gradients of a chunk are formed in the workspace and reduced to norms before the next
    chunk (memory: the workspace, not ``N`` gradients). Float16 / bfloat16 norms are summed in
    float32 and returned in float32.

    Args:
        Same as :func:`per_sample_grad`.

    Shape:
        - Output: ``(N,)`` (a 0-d tensor for unbatched input).

    Example:
        >>> x, go = torch.randn(4, 6, 8, 8), torch.randn(4, 10, 6, 6)
        >>> per_sample_grad_norm(x, go, 3, bias=True).shape
        torch.Size([4])
    """
    conv, go, bias, workspace_bytes = _prepare(
        input, grad_output, kernel_size, stride, padding, dilation, groups, padding_mode,
        transposed, output_padding, bias, workspace_bytes,
    )  # fmt: skip
    dtype = accumulation_dtype(conv.batch.dtype)
    n = go.shape[0]
    batch = conv.batch
    plan = plan_chunks(
        n, batch.shape[1], batch.shape[2:], conv.geometry, batch.element_size(),
        workspace_bytes, batch.device,
    )  # fmt: skip
    whole = all(chunk.whole for chunk in plan)
    if whole and ghost_applies(conv, go.shape[2]):
        squares = _ghost_squares(conv, go, plan, dtype)
    else:
        squares = _direct_squares(conv, go, plan, dtype)
    if bias:
        squares += go.sum(-1, dtype=dtype).square().sum((1, 2))
    norms = squares.sqrt()
    return norms if conv.batched else norms[0]


def _ghost_squares(conv: ConvInput, go: torch.Tensor, plan, dtype: torch.dtype) -> torch.Tensor:
    """``Σ_g <OᵀO, UᵀU>`` per sample, ``(N,)``: two Gram matrices per chunk, no gradients."""
    n, groups, _, length = go.shape
    squares = torch.zeros(n, dtype=dtype, device=go.device)
    for chunk, columns in column_chunks(conv.batch, conv.geometry, plan=plan):
        size = columns.shape[0]
        u = columns.view(size, groups, conv.rows, length).to(dtype)  # (n, g, D, L)
        o = go[chunk.samples].to(dtype)  # (n, g, C, L)
        gram_u = torch.matmul(u.transpose(2, 3), u)  # (n, g, L, L)
        gram_o = torch.matmul(o.transpose(2, 3), o)  # (n, g, L, L)
        squares[chunk.samples] = (gram_u * gram_o).sum((1, 2, 3))
    return squares


def _direct_squares(conv: ConvInput, go: torch.Tensor, plan, dtype: torch.dtype) -> torch.Tensor:
    """``||O Uᵀ||²`` per sample, ``(N,)``: each chunk's gradients formed, then reduced."""
    n, groups = go.shape[:2]
    squares = torch.zeros(n, dtype=dtype, device=go.device)
    partial = None  # one sample's gradient, summed over its slabs
    for chunk, columns in column_chunks(conv.batch, conv.geometry, plan=plan):
        size, length = columns.shape[0], columns.shape[2]
        u = columns.view(size, groups, conv.rows, length)  # (n, g, D, l)
        o = go[chunk.samples, :, :, chunk.positions]  # (n, g, C, l)
        grads = torch.matmul(o, u.transpose(2, 3)).to(dtype)  # (n, g, C, D)
        if chunk.whole:
            squares[chunk.samples] = grads.square().sum((1, 2, 3))
            continue
        partial = grads if chunk.positions.start == 0 else partial + grads
        if chunk.positions.stop == conv.num_positions:  # last slab of this sample
            squares[chunk.samples] = partial.square().sum((1, 2, 3))
    return squares

"""KFAC's two Kronecker factors of a convolution: the input factor A and the output factor B.

Conventions (``u`` a column of one group, ``o`` an output gradient of one group, ``L`` output
positions, ``N`` samples; the contract of ``API.md`` §6):

=============================  =====================================================
this package (``"mean"``)      expand ``A = Σ_n Σ_l ũ ũᵀ / (N L)``, reduce ``Σ_n ū ūᵀ / N``
curvlinops ``KFACLinearOperator``  equal for ``groups=1`` (it averages channel groups)
BackPACK ``KFAC`` / ``KFLR``   input factor ``= L *`` the expand mean
KFC paper (Grosse & Martens)   ``Ω = L *`` the expand mean
=============================  =====================================================
"""

from __future__ import annotations

import math

import torch

from unfoldconv._args import IntOrTuple, Padding, check_int
from unfoldconv._chunked import column_chunks
from unfoldconv.curvature._checks import (
    ConvInput,
    accumulation_dtype,
    check_flag,
    check_float,
    check_mode,
    check_reduction,
    check_tensor,
    check_workspace,
    conv_input,
)
from unfoldconv.curvature._reduce import window_sums
from unfoldconv.memory import default_workspace_bytes

#: Gram blocks per dim of ``U Uᵀ``: only the upper triangle of blocks is multiplied (the lower
#: one is its transpose), ``B (B + 1) / 2`` of ``B²`` blocks. Chosen by measurement (see
#: :func:`_add_gram`); a block is never narrower than :data:`MIN_GRAM_BLOCK` rows.
GRAM_BLOCKS = 4
MIN_GRAM_BLOCK = 192
#: Expand gathers at most this many positions per chunk: beyond it the GEMM is no faster
#: (measured on the All-CNN-C layers), so narrow layers (conv1: ``D = 27``) keep a workspace
#: far below the default.
MAX_CHUNK_POSITIONS = 16384


def kfac_input_factor(
    input: torch.Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    transposed: bool = False,
    output_padding: IntOrTuple = 0,
    mode: str = "expand",
    bias: bool = False,
    reduction: str = "mean",
    workspace_bytes: int | None = None,
) -> torch.Tensor:
    """KFAC's input factor ``A`` of a convolution, per group, without the whole unfolded input.

    ``mode="expand"`` counts every output position as a sample: ``A = Σ_n Σ_l ũ ũᵀ`` with
    ``ũ = [u; 1]`` (``bias=True``) the column of sample ``n`` at position ``l`` within one group,
    divided by ``N * L`` for ``reduction="mean"``. The columns are gathered chunk by chunk into
    one reused workspace (as the conv layers do; ``workspace_bytes``, default 16 MiB on the
    CPU, 1 GiB on a GPU), split between the gathered columns and their group-major copy, and
    only the upper triangle of blocks of ``U Uᵀ`` is multiplied. Peak memory: the input, the
    workspace and the result.

    ``mode="reduce"`` averages the positions first: ``A = Σ_n ū_n ū_nᵀ`` with
    ``ū_n = [mean_l u_{n,l}; 1]``, divided by ``N`` for ``"mean"``. No columns at all: the
    position sums come from prefix sums of the input, separable by dim (see
    :mod:`unfoldconv.curvature._reduce`).

    An empty batch gives zeros (a sum of nothing; its mean is taken as zero too, not NaN, so
    that it adds nothing when factors are summed). Conventions elsewhere: curvlinops' KFAC
    equals these for ``groups=1`` (it averages the channel groups where this keeps the exact
    per-group blocks); BackPACK's KFAC input factor and the KFC paper's ``Ω`` are ``L`` times
    the expand mean.

    How ``d`` is found: the length of any tuple size argument, else ``input.dim() - 2``; pass
    a tuple for unbatched input (counted as one sample).

    Args:
        input: what the layer receives, ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
        kernel_size, stride, padding, dilation, groups: the layer's, ints or d-tuples;
            ``padding`` may be ``"same"`` / ``"valid"`` (convolutions only).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``: the input is
            padded as the layer pads it.
        transposed: a transposed convolution (weight ``(C_in, C_out / groups, *kernel)``); the
            columns are those of :func:`unfoldconv.unfold_transpose`.
        output_padding: the transposed convolution's.
        mode: ``"expand"`` or ``"reduce"``.
        bias: append the ones row (the layer's bias).
        reduction: ``"mean"`` or ``"sum"``.
        workspace_bytes: the column workspace in bytes (``None``: the device's default).

    Shape:
        - Input: ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``
        - Output: ``(groups, D', D')``, ``D' = C_in / groups * prod(kernel_size) + bias``, in
          float32 for float16 / bfloat16 input, else in the input's dtype.

    Example:
        >>> x = torch.randn(8, 4, 10, 10)
        >>> kfac_input_factor(x, 3, padding=1, bias=True).shape
        torch.Size([1, 37, 37])
        >>> kfac_input_factor(x, (3, 3), groups=2, mode="reduce").shape
        torch.Size([2, 18, 18])
    """
    mode = check_mode(mode)
    reduction = check_reduction(reduction)
    bias = check_flag("bias", bias)
    workspace_bytes = check_workspace(workspace_bytes)
    conv = conv_input(
        input, kernel_size, stride, padding, dilation, groups, padding_mode, transposed,
        output_padding,
    )  # fmt: skip
    if mode == "expand":
        factor = expand_input_sum(conv, bias, workspace_bytes)
        count = conv.batch.shape[0] * conv.num_positions
    else:
        factor = reduce_input_sum(conv, bias)
        count = conv.batch.shape[0]
    if reduction == "mean" and count > 0:
        factor /= count
    return factor


def expand_input_sum(conv: ConvInput, bias: bool, workspace_bytes: int | None) -> torch.Tensor:
    """``Σ_n Σ_l ũ ũᵀ`` per group, ``(g, D', D')``, over chunks of the columns."""
    batch, groups, rows = conv.batch, conv.groups, conv.rows
    dtype = accumulation_dtype(batch.dtype)
    size = rows + bias
    factor = batch.new_zeros((groups, size, size), dtype=dtype)
    # the workspace holds the gathered columns and their group-major copy (in ``dtype``)
    budget = default_workspace_bytes(batch.device) if workspace_bytes is None else workspace_bytes
    bytes_per_position = batch.shape[1] * conv.geometry.kernel_numel * batch.element_size()
    budget = min(budget, MAX_CHUNK_POSITIONS * bytes_per_position)
    gathered_share = batch.element_size() / (batch.element_size() + factor.element_size())
    grouped = None
    for _, columns in column_chunks(batch, conv.geometry, max(1, int(budget * gathered_share))):
        n, length = columns.shape[0], columns.shape[2]
        columns = columns.view(n, groups, rows, length)  # (n, g, D, l)
        if n == 1 and columns.dtype == dtype:
            u = columns[0]  # (g, D, l)
        else:
            if grouped is None:
                grouped = torch.empty(columns.numel(), dtype=dtype, device=batch.device)
            # (n, g, D, l) -> (g, D, n, l): one matrix (D, n*l) per group
            u = grouped[: columns.numel()].view(groups, rows, n, length)
            u.copy_(columns.permute(1, 2, 0, 3))
            u = u.view(groups, rows, n * length)
        _add_gram(factor[:, :rows, :rows], u)
        if bias:
            factor[:, :rows, rows] += u.sum(-1)
            factor[:, rows, rows] += u.shape[-1]
    _mirror_upper(factor[:, :rows, :rows])
    if bias:
        factor[:, rows, :rows] = factor[:, :rows, rows]
    return factor


def gram_blocks(rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the row blocks of :func:`_add_gram` for ``rows`` rows."""
    count = max(1, min(GRAM_BLOCKS, rows // MIN_GRAM_BLOCK))
    edges = [round(i * rows / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _add_gram(target: torch.Tensor, u: torch.Tensor) -> None:
    """``target += u uᵀ`` (``(g, D, D)`` and ``(g, D, M)``) on the upper triangle of blocks.

    Blocks below the diagonal are left as they are; :func:`_mirror_upper` fills them at the end.
    """
    blocks = gram_blocks(u.shape[1])
    for i, (start, stop) in enumerate(blocks):
        left = u[:, start:stop]
        for first, last in blocks[i:]:
            target[:, start:stop, first:last].baddbmm_(left, u[:, first:last].transpose(1, 2))


def _mirror_upper(target: torch.Tensor) -> None:
    """Make ``(g, D, D)`` symmetric from the upper triangle of blocks of :func:`_add_gram`."""
    blocks = gram_blocks(target.shape[1])
    for i, (start, stop) in enumerate(blocks):
        for first, last in blocks[i + 1 :]:
            target[:, first:last, start:stop] = target[:, start:stop, first:last].transpose(1, 2)


def reduce_input_sum(conv: ConvInput, bias: bool) -> torch.Tensor:
    """``Σ_n ū ūᵀ`` per group, ``(g, D', D')``, from the window sums (no columns)."""
    batch, groups, rows = conv.batch, conv.groups, conv.rows
    dtype = accumulation_dtype(batch.dtype)
    n = batch.shape[0]
    means = window_sums(batch, conv.geometry, dtype).reshape(n, groups, rows)  # (N, g, D)
    means = means / max(1, conv.num_positions)
    if bias:
        means = torch.cat([means, means.new_ones((n, groups, 1))], dim=2)  # (N, g, D + 1)
    # (g, D', N) @ (g, N, D'): all of it; with N this small the D' x D' writes dominate, and
    # the triangle of blocks (three passes over the result) measured 4x slower
    grouped = means.transpose(0, 1)
    return torch.bmm(grouped.transpose(1, 2), grouped)


def kfac_output_factor(
    grad_output: torch.Tensor, groups: int = 1, *, mode: str = "expand", reduction: str = "sum"
) -> torch.Tensor:
    """KFAC's output-gradient factor ``B`` of a convolution (or ``nn.Linear``), per group.

    ``mode="expand"``: ``B = Σ_n Σ_l o oᵀ``, ``o`` the output gradient at position ``l`` within
    one group; ``mode="reduce"``: ``B = Σ_n (Σ_l o)(Σ_l o)ᵀ``. ``reduction="mean"`` divides by
    ``N`` (an empty batch gives zeros). ``grad_output`` is the gradient of the loss with respect
    to the layer's output; curvlinops' and BackPACK's factor for a loss summed over the batch
    is the ``"sum"`` form (for a mean-reduced loss they rescale by ``N``; so can you).

    Every dim after the first two counts as positions; a 2-d ``(N, C_out)`` has one position
    (a linear layer). Call it with ``grad_output.unsqueeze(0)`` for an unbatched layer.

    Args:
        grad_output: ``(N, C_out, *out)``.
        groups: the layer's groups.
        mode: ``"expand"`` or ``"reduce"``.
        reduction: ``"sum"`` or ``"mean"``.

    Shape:
        - Input: ``(N, C_out, *out)``
        - Output: ``(groups, C_out / groups, C_out / groups)``, float32 for float16 / bfloat16
          input, else the input's dtype.

    Example:
        >>> kfac_output_factor(torch.randn(8, 6, 5, 5), groups=2).shape
        torch.Size([2, 3, 3])
    """
    grad_output = check_tensor("grad_output", grad_output)
    check_float("grad_output", grad_output)
    groups = check_int("groups", groups)
    mode = check_mode(mode)
    reduction = check_reduction(reduction)
    if grad_output.dim() < 2:
        raise ValueError(
            f"grad_output must be (N, C_out, *out) with at least 2 dims, got grad_output of "
            f"shape {tuple(grad_output.shape)}"
        )
    n, c_out = grad_output.shape[:2]
    if c_out % groups:
        raise ValueError(
            f"grad_output.shape[1] (C_out) must be divisible by groups={groups}, got "
            f"grad_output.shape[1] (C_out)={c_out}"
        )
    factor = output_factor_sum(grad_output, groups, mode)
    if reduction == "mean" and n > 0:
        factor /= n
    return factor


def output_factor_sum(grad_output: torch.Tensor, groups: int, mode: str) -> torch.Tensor:
    """``Σ o oᵀ`` per group (expand) or of the position sums (reduce): ``(g, C_out/g, C_out/g)``."""
    n, c_out = grad_output.shape[:2]
    dtype = accumulation_dtype(grad_output.dtype)
    positions = math.prod(grad_output.shape[2:])
    go = grad_output.reshape(n, groups, c_out // groups, positions)  # (N, g, C_out/g, L)
    if mode == "reduce":
        go = go.sum(-1, keepdim=True, dtype=dtype)  # (N, g, C_out/g, 1)
    elif go.dtype != dtype:
        go = go.to(dtype)
    # (g, C_out/g, N*L) @ (g, N*L, C_out/g)
    grouped = go.permute(1, 2, 0, 3).reshape(groups, c_out // groups, -1)
    return torch.bmm(grouped, grouped.transpose(1, 2))

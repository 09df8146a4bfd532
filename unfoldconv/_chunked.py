"""The two chunked engines: convolution and locally connected layer as unfold + matmul.

Why chunks: the columns of a whole batch are ``K`` times the input. Building them at once costs
a fresh, page-faulted buffer on every call, and autograd would keep it alive until backward.
Here the forward keeps only the input and the weight; it gathers ``chunk`` samples at a time into
a workspace of at most the device's default (:mod:`unfoldconv.memory`: 16 MiB on the CPU, 1 GiB
on a GPU; or the caller's ``workspace_bytes``, or the size set by
``with unfoldconv.workspace(num_bytes):``), multiplies, and reuses the same workspace for the
next chunk. Backward gathers each chunk again (for the weight gradient; the forward's columns
are kept instead when the batch was one small chunk, :func:`columns_worth_keeping`) and reuses
the workspace once more for the input gradient's columns, which it folds back (``scatter``). The
peak memory of forward + backward is the input, the output, their gradients and about two
workspaces.

**Layouts.** :class:`ChunkedConv` gathers small images samples-last, ``(C*K, l, n)``
(:func:`prefers_samples_last`), so that one GEMM spans a chunk and the copies run along the
samples; other images sample-major, ``(n, C*K, l)``, multiplied sample by sample into the output.

**One chunk loop.** :func:`plan_chunks` cuts a batch's columns into :class:`Chunk` s: whole
samples, as many as fit the workspace, or, when one sample's columns exceed it (volumes, large
images on a small budget), slabs of output rows along the first spatial dim of one sample
(:func:`slab` finds the input rows and padding a slab reads). :func:`column_chunks` walks a plan
gathering each chunk into one reused workspace; :func:`gather_chunk` / :func:`scatter_chunk`
are its two directions for callers that walk a plan themselves (the backward passes here,
:mod:`unfoldconv.curvature`). Every chunked computation of the package goes through them.

- :class:`ChunkedConv`: one kernel shared by every output position, one GEMM per chunk.
- :class:`ChunkedLocallyConnected`: one kernel per output position, one ``bmm`` per chunk whose
  batch is the (position, group) pairs.

Double backward, one rule for both: when backward itself must be differentiable
(``create_graph=True``, so ``torch.is_grad_enabled()`` inside backward), the input and weight
gradients are those of the *plain* form (whole-batch :class:`~unfoldconv._engine.Im2Col` +
matmul, every op differentiable), taken with ``torch.autograd.grad`` (see
:func:`differentiable_gradients`); the bias gradient is a sum in both cases.

**Precision.** On CUDA the convolution GEMMs follow the project's one policy for convolutions,
``torch.backends.cudnn.allow_tf32`` (:func:`unfoldconv.kernels.conv_tf32`), as cuDNN does, not
``torch.backends.cuda.matmul.allow_tf32``: :func:`conv_precision` wraps the chunked forward and
backward, and the forward of the plain form. (Backward through autograd's own matmul rules, the
plain form under ``torch.func`` / ``torch.compile`` / double backward, follows the matmul flag.)
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch

from unfoldconv._engine import (
    gather,
    gather_samples_last,
    im2col,
    scatter,
    scatter_samples_last,
)
from unfoldconv._geometry import Geometry
from unfoldconv._workspace_pool import pooled
from unfoldconv.kernels import conv_matmul_precision
from unfoldconv.memory import default_workspace_bytes


def chunk_size(
    batch: int, sample_bytes: int, budget: int | None, device: torch.device | None = None
) -> int:
    """How many samples' columns fit into the workspace budget (at least one).

    ``budget=None`` takes the default of ``device`` (see :mod:`unfoldconv.memory`).
    """
    budget = default_workspace_bytes(device) if budget is None else budget
    return max(1, min(batch, budget // max(1, sample_bytes)))


class Chunk(NamedTuple):
    """One piece of a batch's columns: samples ``samples`` x output rows ``rows``.

    ``rows`` runs along the first spatial output dim and ``positions`` is the same range in
    flat (row-major) output positions, ``rows * prod(out[1:])``. ``whole`` says that ``rows``
    covers every output row (the chunk is a slice of whole samples).
    """

    samples: slice
    rows: slice
    positions: slice
    whole: bool


def plan_chunks(
    batch: int,
    channels: int,
    input_size: Sequence[int],
    geometry: Geometry,
    element_size: int,
    budget: int | None = None,
    device: torch.device | None = None,
) -> list[Chunk]:
    """The chunks that walk a batch's columns ``(N, C*K, L)`` within the workspace budget.

    Whole samples, as many per chunk as fit (:func:`chunk_size`); when one sample's columns
    exceed the budget, one sample at a time in slabs of output rows along the first spatial
    dim, as many rows as fit (at least one). Empty for an empty batch.
    """
    budget = default_workspace_bytes(device) if budget is None else budget
    return list(_plan(batch, channels, tuple(input_size), geometry, element_size, budget))


@functools.lru_cache(maxsize=1024)
def _plan(
    batch: int,
    channels: int,
    input_size: tuple[int, ...],
    geometry: Geometry,
    element_size: int,
    budget: int,
) -> tuple[Chunk, ...]:
    """:func:`plan_chunks` with the budget resolved (cached: a layer asks the same every call)."""
    out_size = geometry.output_size(input_size)
    row_positions = math.prod(out_size[1:])
    row_bytes = max(1, channels * geometry.kernel_numel * row_positions * element_size)
    sample_bytes = row_bytes * out_size[0]
    every_row = slice(0, out_size[0])
    every_position = slice(0, out_size[0] * row_positions)
    if sample_bytes <= budget or out_size[0] == 1:
        step = chunk_size(batch, sample_bytes, budget)
        return tuple(
            Chunk(slice(start, stop), every_row, every_position, True)
            for start, stop in batch_chunks(batch, step)
        )
    step = max(1, budget // row_bytes)
    return tuple(
        Chunk(
            slice(sample, sample + 1),
            slice(first, last),
            slice(first * row_positions, last * row_positions),
            False,
        )
        for sample in range(batch)
        for first, last in batch_chunks(out_size[0], step)
    )


def slab(input_size: Sequence[int], geometry: Geometry, rows: slice) -> tuple[slice, Geometry]:
    """The input rows (first spatial dim) that output rows ``rows`` read, and their geometry.

    Returns the slice of the unpadded input and the geometry whose first-dim padding is what
    of the original padding those windows reach, so that unfolding ``input[..., slice, ...]``
    with it gives exactly the columns of output rows ``rows``.
    """
    size, (before, _) = input_size[0], geometry.padding[0]
    span = geometry.dilation[0] * (geometry.kernel_size[0] - 1) + 1
    first = rows.start * geometry.stride[0] - before  # in unpadded input coordinates
    stop = (rows.stop - 1) * geometry.stride[0] + span - before
    start = min(max(0, first), size)
    end = min(max(start, stop), size)
    pad_before = max(0, min(stop, 0) - first)  # window rows above the input
    pad_after = stop - first - pad_before - (end - start)  # and below it
    padding = ((pad_before, pad_after), *geometry.padding[1:])
    return slice(start, end), geometry._replace(padding=padding)


def gather_chunk(
    input: torch.Tensor,
    geometry: Geometry,
    chunk: Chunk,
    out: torch.Tensor | None = None,
    samples_last: bool = False,
) -> torch.Tensor:
    """The columns ``(n, C*K, l)`` of ``chunk`` of ``input``, written into ``out`` if given.

    With ``samples_last`` they are laid out ``(C*K, l, n)`` instead
    (:func:`~unfoldconv._engine.gather_samples_last`): the layout of one GEMM per chunk.
    """
    samples = input[chunk.samples]
    if not chunk.whole:
        rows, geometry = slab(input.shape[2:], geometry, chunk.rows)
        samples = samples[:, :, rows]
    if samples_last:
        return gather_samples_last(samples, geometry, out=out)
    return gather(samples, geometry, out=out)


def scatter_chunk(
    columns: torch.Tensor,
    geometry: Geometry,
    chunk: Chunk,
    grad_input: torch.Tensor,
    samples_last: bool = False,
    compiled: bool = True,
) -> None:
    """Fold the columns ``(n, C*K, l)`` of ``chunk`` into its samples of ``grad_input``.

    ``compiled=False``: the torch route even where the compiled CPU fold would run
    (see :data:`CHUNKED_CONV_COMPILED_FOLD`).

    Whole samples are written; a slab of rows is added (slabs overlap where kernel > stride),
    so ``grad_input`` must start as zeros when the plan has slabs (:func:`has_slabs`). With
    ``samples_last`` the columns are ``(C*K, l, n)`` (as :func:`gather_chunk` gives them).
    """
    input_size = grad_input.shape[2:]
    target = grad_input[chunk.samples]
    if not chunk.whole:
        rows, geometry = slab(input_size, geometry, chunk.rows)
        input_size = (rows.stop - rows.start, *input_size[1:])
        target = target[:, :, rows]
    if samples_last:
        folded = scatter_samples_last(columns, input_size, geometry)  # (C, *size, n)
        if chunk.whole:  # (C * prod(size), n) -> (n, C * prod(size))
            _transpose_into(target.view(target.shape[0], -1), folded.view(-1, target.shape[0]))
            return
        d = geometry.dim
        target.add_(folded.permute(d + 1, 0, *range(1, d + 1)))  # (C, *size, n) -> (n, C, *size)
        return
    if chunk.whole:  # whole samples are written: from zeros (the fold adds into its out)
        target.zero_()
    scatter(columns, input_size, geometry, compiled=compiled, out=target)


def has_slabs(plan: Sequence[Chunk]) -> bool:
    """Whether any chunk of ``plan`` is a slab of rows rather than whole samples."""
    return any(not chunk.whole for chunk in plan)


def columns_numel(chunk: Chunk, rows: int) -> int:
    """Number of elements of the columns of ``chunk`` with ``rows = C*K`` rows."""
    samples = chunk.samples.stop - chunk.samples.start
    return samples * rows * (chunk.positions.stop - chunk.positions.start)


def column_chunks(
    input: torch.Tensor,
    geometry: Geometry,
    budget: int | None = None,
    plan: Sequence[Chunk] | None = None,
    samples_last: bool = False,
) -> Iterator[tuple[Chunk, torch.Tensor]]:
    """The one chunk loop: ``(chunk, columns (n, C*K, l))`` for each chunk of ``input``.

    Every chunk's columns are gathered into one reused workspace (a fresh tensor when the
    plan is a single chunk): use them before asking for the next chunk, which overwrites
    them. ``plan`` defaults to :func:`plan_chunks` of ``input`` and ``budget``. With
    ``samples_last`` the columns are ``(C*K, l, n)`` (see :func:`gather_chunk`).
    """
    n, channels = input.shape[:2]
    if plan is None:
        plan = plan_chunks(
            n, channels, input.shape[2:], geometry, input.element_size(), budget, input.device
        )
    if len(plan) == 1:
        yield plan[0], gather_chunk(input, geometry, plan[0], samples_last=samples_last)
        return
    rows = channels * geometry.kernel_numel
    with new_workspace(input, plan, rows) as workspace:
        for chunk in plan:
            out = workspace[: columns_numel(chunk, rows)]
            yield chunk, gather_chunk(input, geometry, chunk, out=out, samples_last=samples_last)


def new_workspace(
    like: torch.Tensor, plan: Sequence[Chunk], rows: int
) -> contextlib.AbstractContextManager[torch.Tensor]:
    """Context manager: an uninitialised 1-d buffer large enough for the columns of every chunk
    of ``plan``, held for the block (reused from call to call on the CPU:
    :mod:`unfoldconv._workspace_pool`)."""
    return pooled(like, max((columns_numel(chunk, rows) for chunk in plan), default=0))


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


def conv_precision(function: Callable) -> Callable:
    """Decorator: run a conv routine whose first argument is the input under
    :func:`~unfoldconv.kernels.conv_matmul_precision` when that input is a CUDA tensor (a plain
    call on the CPU, where nothing changes: no context manager on the hot path)."""

    @functools.wraps(function)
    def wrapped(input: torch.Tensor, *args, **kwargs):
        if not input.is_cuda:
            return function(input, *args, **kwargs)
        with conv_matmul_precision(input):
            return function(input, *args, **kwargs)

    return wrapped


@conv_precision
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


#: Chunks of samples with at most this many output positions each are gathered samples-last,
#: ``(C*K, l, n)``: the copies then run along ``n`` (and the fold's ``add_`` too), and one GEMM
#: spans the chunk, at the price of an input-sized and two output-sized transposes. Above it
#: the rows of one sample are long enough, and the transposes cost more than they save.
#: Measured (All-CNN-C, batch 32, one thread, CPU time, ours / ``nn.Conv2d``, sample-major vs
#: samples-last): conv7 (36 positions) forward 1.85 vs 1.26, f+b 1.70 vs 1.20; conv6 (64)
#: 1.36 vs 1.31, 1.21 vs 1.01; conv3 (256) 1.50 vs 1.99, 1.44 vs 1.61.
SAMPLES_LAST_POSITIONS = 100


def prefers_samples_last(out_size: Sequence[int], columns_numel: int) -> bool:
    """Whether :class:`ChunkedConv` lays a chunk's columns out samples-last (see above); not
    for columns under :data:`SMALL_COLUMNS` elements, where the extra transposes are calls that
    cost more than they save."""
    return math.prod(out_size) <= SAMPLES_LAST_POSITIONS and columns_numel >= SMALL_COLUMNS


#: Columns of fewer elements (a 256 KiB float32 chunk) take the fewest calls: no transposes.
SMALL_COLUMNS = 1 << 16


def _transpose_into(target: torch.Tensor, source: torch.Tensor) -> None:
    """``target (a, b) <- source (b, a)`` transposed, through torch's blocked 2-d transpose
    (a plain strided ``copy_`` of a permuted view writes across pages: up to 4x slower)."""
    target.copy_(source.t())


@conv_precision
def conv_chunks(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
    budget: int | None,
    keep_columns: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
    """The forward of :class:`ChunkedConv`: gather a chunk, one GEMM, next chunk.

    Small images (:func:`prefers_samples_last`) are gathered samples-last, ``(C*K, l, n)``,
    so that one GEMM per group covers every (position, sample) pair of the chunk; its
    ``(C_out, l*n)`` product is transposed into the ``(n, C_out, l)`` output. Larger ones are
    gathered ``(n, C*K, l)`` and multiplied sample by sample straight into the output. With
    ``keep_columns`` it returns ``(output, columns)``, the columns being those of a plan of one
    chunk that :func:`columns_worth_keeping` accepts, else ``None``.
    """
    n, channels = input.shape[:2]
    c_out = weight.shape[0]
    out_size = geometry.output_size(input.shape[2:])
    num_blocks = math.prod(out_size)
    rows = channels * geometry.kernel_numel  # C*K
    kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
    plan = plan_chunks(
        n, channels, input.shape[2:], geometry, input.element_size(), budget, input.device
    )
    samples_last = prefers_samples_last(out_size, columns_numel(plan[0], rows) if plan else 0)
    if len(plan) == 1 and not samples_last and groups == 1:  # the fewest calls: small batches
        columns = gather(input, geometry)  # (N, C*K, L)
        # the output is allocated in its returned shape and written through a view: a view
        # output of a custom Function forbids in-place ops such as nn.ReLU(inplace=True)
        output = input.new_empty((n, c_out, *out_size))
        flat = output.view(n, c_out, num_blocks)  # (N, C_out, L)
        if bias is None:
            torch.matmul(kernels[0], columns, out=flat)
        else:  # the bias added by the GEMM itself
            torch.baddbmm(bias.view(1, c_out, 1), kernels.expand(n, -1, -1), columns, out=flat)
        if not keep_columns:
            return output
        return output, columns if columns_worth_keeping(input, columns) else None
    returned = input.new_empty((n, c_out, *out_size))  # returned as it is (see above)
    output = returned.view(n, c_out, num_blocks)
    with contextlib.ExitStack() as stack:
        products = None
        if samples_last:
            products = stack.enter_context(new_workspace(input, plan, c_out))
        columns = _conv_chunks_loop(
            input, geometry, plan, samples_last, groups, kernels, rows, output, products
        )
    if bias is not None:
        output.add_(bias.view(1, c_out, 1))
    if not keep_columns:
        return returned
    keep = len(plan) == 1 and columns_worth_keeping(input, columns)
    return returned, columns if keep else None


def _conv_chunks_loop(input, geometry, plan, samples_last, groups, kernels, rows, output, products):
    """The chunk loop of :func:`conv_chunks` into ``output (N, C_out, L)``; returns the last
    chunk's columns."""
    c_out = output.shape[1]
    columns = None
    for chunk, columns in column_chunks(input, geometry, plan=plan, samples_last=samples_last):
        if samples_last:
            _, length, size = columns.shape
            product = products[: c_out * length * size].view(groups, -1, length * size)
            # (g, C_out/g, C/g*K) @ (g, C/g*K, l*n) -> (g, C_out/g, l*n)
            torch.bmm(kernels, columns.view(groups, rows // groups, -1), out=product)
            if chunk.whole:  # (C_out * l, n) -> (n, C_out * l)
                _transpose_into(output[chunk.samples].view(size, -1), product.view(-1, size))
            else:
                moved = product.view(c_out, length, size).permute(2, 0, 1)  # (n, C_out, l)
                output[chunk.samples, :, chunk.positions] = moved
            continue
        size, length = columns.shape[0], columns.shape[2]
        columns = columns.view(size, groups, rows // groups, length)  # (n, g, C/g*K, l)
        if chunk.whole:
            target = output[chunk.samples].view(size, groups, c_out // groups, length)
            torch.matmul(kernels, columns, out=target)  # (n, g, C_out/g, L)
        elif groups == 1:  # a slab of positions: its rows of the output, a BLAS-strided matrix
            target = output[chunk.samples.start, :, chunk.positions]  # (C_out, l), row stride L
            torch.mm(kernels[0], columns[0, 0], out=target)
        else:  # a slab of positions: a strided target, written by a copy
            product = torch.matmul(kernels, columns)  # (1, g, C_out/g, l)
            output[chunk.samples, :, chunk.positions] = product.view(size, c_out, length)
    return columns


#: Whether :class:`ChunkedConv`'s backward folds through the compiled CPU fold where it would
#: run. Off: loading numba's compiler costs about 95 MiB of resident memory (the main job,
#: batch 32: peak RSS 877 MiB with it, 782 without, native 698), and in the chunk loop the
#: torch route is close to it on a quiet machine (small images fold samples-last on the torch
#: route anyway). The public ``fold`` keeps it (0.55x vs 0.67x ``F.fold``, median, 1 thread).
CHUNKED_CONV_COMPILED_FOLD = False


#: Forward columns are kept for backward (instead of gathered again) only when the whole batch
#: was one chunk (at most the workspace) and they are at most this many times the input's
#: elements: the columns are ``K`` times the input, so this keeps those of 3x3 kernels and no
#: larger (All-CNN-C at batch 32: conv1, conv6, conv7, 26 MiB together; at most one workspace
#: per layer).
KEEP_COLUMNS_FACTOR = 9


def columns_worth_keeping(input: torch.Tensor, columns: torch.Tensor) -> bool:
    """Whether the forward's ``columns`` are cheap enough to keep for backward."""
    return columns.numel() <= KEEP_COLUMNS_FACTOR * input.numel()


class ChunkedConv(torch.autograd.Function):
    """``conv`` of an already padded-by-mode input, chunk by chunk (see the module docstring).

    Saves ``input`` and ``weight`` for backward, and the forward's columns when the whole batch
    was one chunk and they are small (:func:`columns_worth_keeping`). Returns ``(output,
    columns)``; callers use the output (the columns are not differentiable).
    """

    @staticmethod
    def forward(
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        geometry: Geometry,
        groups: int,
        budget: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output, columns = conv_chunks(
            input, weight, bias, geometry, groups, budget, keep_columns=True
        )
        return output, input.new_empty(0) if columns is None else columns

    @staticmethod
    def setup_context(ctx, inputs, outputs) -> None:
        input, weight, _, ctx.geometry, ctx.groups, ctx.budget = inputs
        columns = outputs[1]
        ctx.mark_non_differentiable(columns)
        ctx.save_for_backward(input, weight, columns)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor, _grad_columns):
        input, weight, kept = ctx.saved_tensors
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
        grad_input, grad_weight = conv_backward_chunks(
            input,
            weight,
            grad_output,
            geometry,
            groups,
            ctx.budget,
            kept if kept.numel() else None,
            (need_input, need_weight),
        )
        return grad_input, grad_weight, grad_bias, None, None, None


@conv_precision
def conv_backward_chunks(
    input: torch.Tensor,
    weight: torch.Tensor,
    grad_output: torch.Tensor,
    geometry: Geometry,
    groups: int,
    budget: int | None,
    kept: torch.Tensor | None,
    needs: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(grad_input, grad_weight)`` of :class:`ChunkedConv`, chunk by chunk.

    Per chunk: the columns (``kept`` from forward when given, else gathered again into the
    workspace) give the weight gradient in one GEMM over (sample, position); then the input
    gradient's columns, one GEMM into the same workspace, are folded into ``grad_input``. The
    layout is the forward's (:func:`prefers_samples_last`): samples-last, where the output
    gradient is transposed once per chunk to match, or sample-major, where the columns are.
    """
    need_input = needs[0]
    n, channels = input.shape[:2]
    c_out = weight.shape[0]
    rows = channels * geometry.kernel_numel
    plan = plan_chunks(
        n, channels, input.shape[2:], geometry, input.element_size(), budget, input.device
    )
    samples_last = prefers_samples_last(
        grad_output.shape[2:], columns_numel(plan[0], rows) if plan else 0
    )
    with contextlib.ExitStack() as stack:
        workspace = None
        if need_input or kept is None:
            workspace = stack.enter_context(new_workspace(input, plan, rows))
        # samples-last: the output gradient's chunk (C_out, l, n); else the columns by row
        spare = stack.enter_context(
            new_workspace(grad_output, plan, c_out if samples_last else rows)
        )
        return _conv_backward_loop(
            input,
            weight,
            grad_output,
            geometry,
            groups,
            plan,
            samples_last,
            kept,
            needs,
            workspace,
            spare,
        )


def _conv_backward_loop(
    input, weight, grad_output, geometry, groups, plan, samples_last, kept, needs, workspace, spare
):
    """The chunk loop of :func:`conv_backward_chunks`, with its two workspaces."""
    need_input, need_weight = needs
    n, channels = input.shape[:2]
    c_out = weight.shape[0]
    num_blocks = math.prod(grad_output.shape[2:])
    rows = channels * geometry.kernel_numel
    kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)
    grad_input = None
    if need_input:  # slabs add into overlapping rows: they need a zero start
        grad_input = (
            input.new_zeros(input.shape) if has_slabs(plan) else input.new_empty(input.shape)
        )
    transposed = weight_gradient_transposed(c_out // groups)
    grad_weight = None
    if need_weight:  # (g, C_out/g, C/g*K), or its transpose (g, C/g*K, C_out/g)
        grad_weight = weight.new_zeros(
            kernels.transpose(1, 2).shape if transposed else kernels.shape
        )
    go = grad_output.reshape(n, c_out, num_blocks)
    for chunk in plan:
        size = chunk.samples.stop - chunk.samples.start
        length = chunk.positions.stop - chunk.positions.start
        buffer = None if workspace is None else workspace[: columns_numel(chunk, rows)]
        go_chunk = go[chunk.samples, :, chunk.positions]  # (n, C_out, l)
        if samples_last:
            # (n, C_out * l) -> (C_out * l, n): the columns' samples-last layout
            go_rows = spare[: columns_numel(chunk, c_out)].view(-1, size)
            if chunk.whole:
                _transpose_into(go_rows, go_chunk.reshape(size, -1))
            else:
                go_rows.view(c_out, length, size).copy_(go_chunk.permute(1, 2, 0))
            go_rows = go_rows.view(groups, c_out // groups, length * size)
        if need_weight:
            columns = kept
            if columns is None:
                columns = gather_chunk(
                    input, geometry, chunk, out=buffer, samples_last=samples_last
                )
            if samples_last:
                by_row = columns.view(groups, rows // groups, length * size)
                go_by_row = go_rows
            elif size == 1:  # one sample (or a slab of one): already (g, C/g*K, l)
                by_row = columns.view(groups, rows // groups, length)
                go_by_row = go_chunk.view(groups, c_out // groups, length)
            else:
                # one GEMM per chunk, contracting over (sample, position): lay both operands
                # out sample-inner, the columns in the spare workspace
                # (n, g, C/g*K, l) -> (g, C/g*K, n, l)
                by_row = spare[: columns.numel()].view(groups, rows // groups, size, length)
                by_row.copy_(columns.view(size, groups, -1, length).permute(1, 2, 0, 3))
                by_row = by_row.view(groups, rows // groups, size * length)
                # (n, C_out, l) -> (g, C_out/g, n*l)
                go_by_row = go_chunk.view(size, groups, -1, length).permute(1, 2, 0, 3)
                go_by_row = go_by_row.reshape(groups, c_out // groups, size * length)
            # (g, C_out/g, n*l) @ (g, n*l, C/g*K) summed into (g, C_out/g, C/g*K): one GEMM per
            # chunk (a GEMM per sample would be a parallel region per sample, each waiting for
            # a descheduled thread under load: conv1 f+b 6x native with one busy process), or
            # its transpose (see weight_gradient_transposed)
            if transposed:
                grad_weight.baddbmm_(by_row, go_by_row.transpose(1, 2))
            else:
                grad_weight.baddbmm_(go_by_row, by_row.transpose(1, 2))
        if need_input:
            if samples_last:
                grad_columns = buffer.view(groups, rows // groups, length * size)
                # (g, C/g*K, C_out/g) @ (g, C_out/g, l*n) -> (g, C/g*K, l*n)
                torch.bmm(kernels.transpose(1, 2), go_rows, out=grad_columns)
                grad_columns = grad_columns.view(rows, length, size)
            else:
                grad_columns = buffer.view(size, groups, rows // groups, length)
                go_groups = go_chunk.view(size, groups, c_out // groups, length)
                torch.matmul(kernels.transpose(1, 2), go_groups, out=grad_columns)
                grad_columns = grad_columns.view(size, rows, length)
            scatter_chunk(
                grad_columns, geometry, chunk, grad_input, samples_last, CHUNKED_CONV_COMPILED_FOLD
            )
    if need_weight:
        if transposed:  # (g, C/g*K, C_out/g) -> (g, C_out/g, C/g*K): a weight-sized copy
            grad_weight = grad_weight.transpose(1, 2)
        grad_weight = grad_weight.reshape(weight.shape)
    return grad_input, grad_weight


#: The weight gradient's GEMM contracts over the chunk's (sample, position) pairs, a long
#: inner dimension between two short ones. MKL runs it 1.0-3x faster as ``(C/g*K, C_out/g)``,
#: columns times the transposed output gradient, than as ``(C_out/g, C/g*K)`` when ``C_out/g``
#: is at least this (2 threads, ms, ours / transposed: the 3-d case's ``32 x 432 x 16384``
#: 6.9 / 3.2, ``16 x 432 x 8192`` 2.9 / 0.9, All-CNN-C conv1 ``96 x 27 x 32768`` 2.6 / 1.5,
#: conv7 ``192 x 1728 x 1152`` 4.1 / 3.1, conv2-conv6 within 5% either way), and slower
#: below (``10 x 192 x 1152``: 0.05 / 0.12).
WEIGHT_GRADIENT_TRANSPOSED_FROM = 16


def weight_gradient_transposed(c_out_per_group: int) -> bool:
    """Whether :func:`conv_backward_chunks` accumulates the weight gradient transposed."""
    return c_out_per_group >= WEIGHT_GRADIENT_TRANSPOSED_FROM


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
    # (L, g, C_out/g, C/g*K) -> (L, g, C/g*K, C_out/g)
    kernels = weight.reshape(num_blocks, groups, c_out // groups, -1).transpose(2, 3)
    returned = input.new_empty((n, c_out, *out_size))  # returned as it is: no view output
    output = returned.view(n, c_out, num_blocks)
    by_position = None
    for chunk, columns in column_chunks(input, geometry, budget):
        size, length = columns.shape[0], columns.shape[2]
        if by_position is None:
            by_position = torch.empty_like(columns).view(-1)
        columns = _position_major(columns, groups, by_position)  # (l*g, n, C/g*K)
        chunk_kernels = kernels[chunk.positions].reshape(length * groups, rows // groups, -1)
        result = torch.bmm(columns, chunk_kernels)  # (l*g, n, C_out/g)
        # (l, g, n, C_out/g) -> (n, g, C_out/g, l)
        output[chunk.samples, :, chunk.positions].view(size, groups, c_out // groups, length).copy_(
            result.view(length, groups, size, c_out // groups).permute(2, 1, 3, 0)
        )
    if bias is not None:
        returned.add_(bias)  # bias (C_out, *out) broadcasts over N
    return returned


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
        n, channels = input.shape[:2]
        rows = channels * geometry.kernel_numel
        plan = plan_chunks(
            n, channels, input.shape[2:], geometry, input.element_size(), ctx.budget, input.device
        )
        with (
            new_workspace(input, plan, rows) as gathered,
            new_workspace(input, plan, rows) as by_position,
        ):
            return _locally_connected_backward_loop(
                input,
                weight,
                grad_output,
                geometry,
                groups,
                plan,
                gathered,
                by_position,
                (need_input, need_weight),
                grad_bias,
            )


def _locally_connected_backward_loop(
    input, weight, grad_output, geometry, groups, plan, gathered, by_position, needs, grad_bias
):
    """The chunk loop of :class:`ChunkedLocallyConnected`'s backward, with its workspaces."""
    need_input, need_weight = needs
    d = geometry.dim
    n, channels = input.shape[:2]
    num_blocks = math.prod(weight.shape[:d])
    c_out = weight.shape[d]
    rows = channels * geometry.kernel_numel
    # (L, g, C_out/g, C/g*K): a slab of positions is a slice of the first axis
    kernels = weight.reshape(num_blocks, groups, c_out // groups, -1)
    grad_weight = weight.new_zeros(kernels.shape) if need_weight else None
    grad_input = None
    if need_input:  # slabs add into overlapping rows: they need a zero start
        grad_input = (
            input.new_zeros(input.shape) if has_slabs(plan) else input.new_empty(input.shape)
        )
    go = grad_output.reshape(n, groups, c_out // groups, num_blocks)
    for chunk in plan:
        size = chunk.samples.stop - chunk.samples.start
        length = chunk.positions.stop - chunk.positions.start
        buffer = gathered[: columns_numel(chunk, rows)]
        # (n, g, C_out/g, l) -> (l*g, n, C_out/g)
        # contiguous: bmm on matrices that are neither row- nor column-major is slow
        go_chunk = go[chunk.samples, :, :, chunk.positions].permute(3, 1, 0, 2).contiguous()
        go_chunk = go_chunk.view(-1, size, c_out // groups)
        if need_weight:
            columns = gather_chunk(input, geometry, chunk, out=buffer)
            columns = _position_major(columns, groups, by_position)  # (l*g, n, C/g*K)
            # (l*g, C_out/g, n) @ (l*g, n, C/g*K) summed into (l*g, C_out/g, C/g*K)
            grad_weight[chunk.positions].view(length * groups, c_out // groups, -1).baddbmm_(
                go_chunk.transpose(1, 2), columns
            )
        if need_input:
            chunk_kernels = kernels[chunk.positions].reshape(length * groups, c_out // groups, -1)
            grad_columns = torch.bmm(go_chunk, chunk_kernels)  # (l*g, n, C/g*K)
            # (l, g, n, C/g*K) -> (n, g, C/g*K, l)
            target = buffer.view(size, groups, rows // groups, length)
            target.copy_(grad_columns.view(length, groups, size, -1).permute(2, 1, 3, 0))
            scatter_chunk(target.view(size, rows, length), geometry, chunk, grad_input)
    if need_weight:
        grad_weight = grad_weight.view(weight.shape)
    return grad_input, grad_weight, grad_bias, None, None, None


def _position_major(columns: torch.Tensor, groups: int, by_position: torch.Tensor) -> torch.Tensor:
    """Columns ``(n, C*K, l)`` as ``(l*g, n, C/g*K)``, written into ``by_position``."""
    n, rows, length = columns.shape
    target = by_position[: columns.numel()].view(length, groups, n, rows // groups)
    # (n, g, C/g*K, l) -> (l, g, n, C/g*K)
    target.copy_(columns.view(n, groups, rows // groups, length).permute(3, 1, 0, 2))
    return target.view(length * groups, n, rows // groups)

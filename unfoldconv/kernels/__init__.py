"""Triton kernels for the engine: one file per op, each the ``@triton.jit`` kernel and its launcher.

- :func:`unfold`: one gather kernel for any ``d`` (``_unfold.py``): zero padding, dilation,
  stride, flipped kernel offsets, an input dilation (the zeros of a transposed convolution,
  never materialised) and any input strides, read in place. A program owns rows of the columns
  times a power-of-two tile of the output grid sized to it; window and sizes are compile-time
  constants (no runtime division per element).
- :func:`fold`: its adjoint in *gather form* (``_fold.py``): every output element sums its own
  contributing columns in the fixed row-major kernel-offset order, the positions split by
  stride phase so that each program loops only over the offsets that reach its phase. No
  atomics, one pass over the output, bit-identical from run to run.

Each launcher caches its launch plan per shape, strides, dtype and window, and on CUDA calls
the warmed kernel directly (:class:`unfoldconv.kernels._launch.Launcher`).
- :func:`unfold_transpose` and its adjoint :func:`unfold_transpose_adjoint`
  (``_unfold_transpose.py``) on the same two kernels.
- :func:`conv` and :func:`conv_transpose`: implicit-GEMM convolution for any ``d``
  (``_conv.py``: the kernels; ``_conv_function.py``: forward, input gradient and weight
  gradient as autograd functions, each differentiable through the other two). The column tiles
  are loaded straight from the input into ``tl.dot``, never written to memory; the weight
  gradient sums in a fixed order (bit-identical run to run). :func:`conv_wanted` is the rule the
  functional convs ask (see :func:`unfoldconv._backend.conv_route` for the switch).

Precision policy (one for every convolution on CUDA): float32 convolutions follow
``torch.backends.cudnn.allow_tf32``, the flag torch's own convolutions (cuDNN) follow, True by
default: when set, the implicit-GEMM kernels multiply on TF32 tensor cores (``tl.dot``'s
``input_precision="tf32"``), else in IEEE float32. float16/bfloat16 multiply in their type and
accumulate in float32, float64 stays float64. :func:`conv_tf32` says which applies to a tensor;
the unfold + GEMM routes' matmuls follow the same flag: the engine runs them under
:func:`conv_matmul_precision` (:func:`unfoldconv._chunked.conv_precision`), which sets
``torch.backends.cuda.matmul.allow_tf32`` to it for their duration.

Importing this package does not import Triton; the launchers do, on first use. The engine
(:mod:`unfoldconv._engine`) is the one caller that chooses between these kernels and the torch
route (:func:`unfoldconv._backend.use_triton` and :func:`supports`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from unfoldconv._geometry import Geometry

#: The dtypes the kernels handle. Everything else (complex, float8, uint16/32/64, ...) takes
#: the pure-torch route on every backend.
SUPPORTED_DTYPES = frozenset(
    {
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.bool,
    }
)


#: The dtypes of the implicit-GEMM convolution; others take the unfold + GEMM route.
CONV_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


def supports(dtype: torch.dtype) -> bool:
    """Whether the Triton kernels handle ``dtype``.

    True for float16, bfloat16, float32, float64, int8, int16, int32, int64, uint8 and bool;
    False for complex, float8 and the wide unsigned types, which take the torch route.

    Example:
        >>> supports(torch.bfloat16), supports(torch.complex64)
        (True, False)
    """
    return dtype in SUPPORTED_DTYPES


def unfold(
    input: torch.Tensor,
    geometry: Geometry,
    out: torch.Tensor | None = None,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C * K, L)``: what ``unfoldconv._engine.gather`` returns.

    ``out`` (optional) is a contiguous buffer of ``N * C * K * L`` elements of ``input``'s dtype;
    the result is then a view of it. ``input_dilation`` (per dim, default 1) reads ``input`` as
    if ``input_dilation - 1`` zeros stood between neighbouring elements; ``geometry.padding``
    may then be negative (a crop).
    """
    from unfoldconv.kernels import _unfold

    return _unfold.unfold(input, geometry, out, input_dilation)


def fold(
    columns: torch.Tensor,
    input_size: Sequence[int],
    geometry: Geometry,
    input_dilation: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(N, C * K, L) -> (N, C, *input_size)``: the adjoint of :func:`unfold` (same arguments),
    what ``unfoldconv._engine.scatter`` returns. float16/bfloat16 accumulate in float32."""
    from unfoldconv.kernels import _fold

    return _fold.fold(columns, input_size, geometry, input_dilation)


def unfold_transpose(
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The columns ``(N, C * K, L_out)`` of a transposed convolution, as
    :func:`unfoldconv.unfold_transpose` (batched input, d-tuples), without building the
    stride-dilated input."""
    from unfoldconv.kernels import _unfold_transpose

    return _unfold_transpose.unfold_transpose(
        input, kernel_size, stride, padding, output_padding, dilation, out
    )


def unfold_transpose_adjoint(
    columns: torch.Tensor,
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
) -> torch.Tensor:
    """``(N, C * K, L_out) -> (N, C, *input_size)``: the adjoint (so the backward) of
    :func:`unfold_transpose`."""
    from unfoldconv.kernels import _unfold_transpose

    return _unfold_transpose.unfold_transpose_adjoint(
        columns, input_size, kernel_size, stride, padding, output_padding, dilation
    )


def conv_wanted(input: torch.Tensor, weight: torch.Tensor, geometry: Geometry) -> bool:
    """Whether the convolution of ``input`` (a checked batch) by ``weight`` runs through the
    implicit-GEMM kernels (:func:`conv`): the Triton backend applies to ``input`` (CUDA tensors,
    or CPU ones under the interpreter with the ``"triton"`` backend forced), a dtype of
    :data:`CONV_DTYPES`, windows that overlap or leave gaps (tiling windows are a rearrange +
    GEMM), and the conv route (:func:`unfoldconv._backend.conv_route`) not ``"unfold"``.

    Example:
        >>> from unfoldconv._args import make_geometry
        >>> geometry = make_geometry(2, 3, 1, 1, 1)  # kernel 3, dilation 1, padding 1, stride 1
        >>> conv_wanted(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), geometry)  # CPU, auto
        False
    """
    from unfoldconv._backend import current_conv_route, use_triton

    return (
        input.dtype in CONV_DTYPES
        and not geometry.is_non_overlapping
        and not geometry.flip
        and current_conv_route() != "unfold"
        and use_triton(input)
        and weight.device == input.device
    )


def conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """Convolution of a checked batch ``(N, C_in, *spatial)`` by ``weight`` ``(C_out, C_in /
    groups, *kernel_size)`` with zero padding ``geometry.padding``, through the implicit-GEMM
    kernels; differentiable (every order) in ``input``, ``weight`` and ``bias``."""
    from unfoldconv.kernels import _conv_function

    return _conv_function.conv(input, weight, bias, geometry, groups)


def conv_transpose(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    output_size: Sequence[int],
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """Transposed convolution of a checked batch: ``weight`` ``(C_in, C_out / groups,
    *kernel_size)``, ``geometry`` the (kernel, dilation, padding, stride) of the convolution it
    transposes, ``output_size`` its spatial input size; through the implicit-GEMM input-gradient
    kernel, differentiable in all three tensors."""
    from unfoldconv.kernels import _conv_function

    return _conv_function.conv_transpose(input, weight, bias, output_size, geometry, groups)


def conv_tf32(tensor: torch.Tensor) -> bool:
    """Whether float32 convolutions of ``tensor`` multiply in TF32 under the project's policy:
    a float32 CUDA tensor and ``torch.backends.cudnn.allow_tf32`` set.

    Example:
        >>> conv_tf32(torch.randn(2))  # a CPU tensor: IEEE float32
        False
    """
    return tensor.is_cuda and tensor.dtype == torch.float32 and torch.backends.cudnn.allow_tf32


@contextlib.contextmanager
def conv_matmul_precision(tensor: torch.Tensor) -> Iterator[None]:
    """Context manager for the unfold + GEMM route: inside it torch's float32 matmuls on
    ``tensor``'s device follow the convolution policy (:func:`conv_tf32`) instead of
    ``torch.backends.cuda.matmul.allow_tf32``. Nothing changes for CPU tensors.

    Example:
        >>> with conv_matmul_precision(torch.randn(2)):
        ...     pass
    """
    if not tensor.is_cuda:
        yield
        return
    matmul = torch.backends.cuda.matmul
    previous = matmul.allow_tf32
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        yield
    finally:
        matmul.allow_tf32 = previous

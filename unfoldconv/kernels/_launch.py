"""What every kernel launch shares: the kernel's form per device, the tile, the index width.

``@triton.jit`` builds either a compiled kernel or, when ``TRITON_INTERPRET=1`` is set at that
moment, an interpreted one, fixed at import. The engine decides per call instead (see
:func:`unfoldconv._backend.use_triton`), so the launch picks the form from the device: Triton's
interpreter for CPU tensors, the compiled kernel for GPU tensors, both built from the same Python
function whatever the environment was at import. For that the kernels call only Triton builtins
(``tl.full``, not the ``@triton.jit`` helpers ``tl.zeros`` or ``tl.cdiv``, whose form is fixed at
import too).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction


@functools.cache
def _interpreted(fn):
    return InterpretedFunction(fn)


@functools.cache
def _compiled(fn):
    return JITFunction(fn)


def kernel_for(kernel, device: torch.device):
    """``kernel`` (a ``@triton.jit`` function) as the interpreter runs it on CPU, else compiled."""
    if device.type == "cpu":
        return kernel if isinstance(kernel, InterpretedFunction) else _interpreted(kernel.fn)
    return kernel if isinstance(kernel, JITFunction) else _compiled(kernel.fn)


def launch(kernel, grid: tuple[int, ...], device: torch.device, *args, **options) -> None:
    """Run ``kernel[grid](*args, **options)`` on ``device`` (the one place kernels are launched).

    A GPU kernel runs on the current device's stream, so the tensors' device is made current.
    """
    runnable = kernel_for(kernel, device)
    if device.type == "cuda" and not is_current(device):
        with torch.cuda.device(device):
            runnable[grid](*args, **options)
    else:
        runnable[grid](*args, **options)


def is_current(device: torch.device) -> bool:
    """Whether CUDA ``device`` is the current device (no device switch needed to launch)."""
    return device.index is None or device.index == torch.cuda.current_device()


# Elements per program: 16 per thread at 4 warps, enough loads in flight to keep an H100's
# memory busy on a copy while leaving registers for full occupancy.
TILE = 2048
# Widest block along the contiguous axis (one row of columns, or one sample-channel's spatial
# positions); narrower rows stack several per program so short rows do not idle lanes.
MAX_BLOCK = 1024
# Launch options of every kernel: 4 warps (see TILE); no floating multiply-add contraction (the
# kernels only copy and add, and an explicit choice keeps Triton's default-change warning quiet).
OPTIONS = {"num_warps": 4, "enable_fp_fusion": False}


def tile(num_rows: int, row_length: int) -> tuple[int, int]:
    """``(BLOCK_ROWS, BLOCK_COLS)`` for a ``num_rows x row_length`` row-major output."""
    block_cols = min(next_power_of_2(row_length), MAX_BLOCK)
    block_rows = min(max(1, TILE // block_cols), next_power_of_2(num_rows))
    return block_rows, block_cols


def num_programs(num_rows: int, row_length: int, block_rows: int, block_cols: int) -> int:
    return -(-num_rows // block_rows) * -(-row_length // block_cols)


def next_power_of_2(value: int) -> int:
    return 1 << max(0, value - 1).bit_length()


def needs_int64(*tensors: torch.Tensor) -> bool:
    """Whether an element offset into any of ``tensors`` can reach 2**31 (int32 would wrap)."""
    return any(
        sum((size - 1) * abs(step) for size, step in zip(t.shape, t.stride())) >= 2**31 - 1
        or t.numel() >= 2**31 - 1
        for t in tensors
    )


def sizes_need_int64(*shapes_and_strides: tuple[Sequence[int], Sequence[int]]) -> bool:
    """:func:`needs_int64` from ``(shape, strides)`` pairs (hashable: cached launch plans)."""
    return any(
        sum((size - 1) * abs(step) for size, step in zip(shape, strides)) >= 2**31 - 1
        or math.prod(shape) >= 2**31 - 1
        for shape, strides in shapes_and_strides
    )


def window_output_size(
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    padding: Sequence[tuple[int, int]],
    stride: Sequence[int],
    input_dilation: Sequence[int],
) -> tuple[int, ...]:
    """Window positions per dim over the input-dilated, padded input (torch's conv formula)."""
    return tuple(
        ((size - 1) * step_in + 1 + lo + hi - dil * (k - 1) - 1) // s + 1
        for size, k, dil, (lo, hi), s, step_in in zip(
            input_size, kernel_size, dilation, padding, stride, input_dilation
        )
    )


def workspace(out: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``out`` viewed as ``shape``: a contiguous buffer of exactly that many ``dtype`` elements."""
    if out.dtype != dtype or not out.is_contiguous() or out.numel() != math.prod(shape):
        raise ValueError(
            f"out must be a contiguous {dtype} tensor of {math.prod(shape)} elements, got out "
            f"of dtype {out.dtype}, shape {tuple(out.shape)}, strides {out.stride()}"
        )
    return out.view(shape)

"""What every kernel launch shares: the kernel's form per device, the launcher, the tile, the
index width.

``@triton.jit`` builds either a compiled kernel or, when ``TRITON_INTERPRET=1`` is set at that
moment, an interpreted one, fixed at import. The engine decides per call instead (see
:func:`unfoldconv._backend.use_triton`), so the launch picks the form from the device: Triton's
interpreter for CPU tensors, the compiled kernel for GPU tensors, both built from the same Python
function whatever the environment was at import. For that the kernels call only Triton builtins
(``tl.full``, not the ``@triton.jit`` helpers ``tl.zeros`` or ``tl.cdiv``, whose form is fixed at
import too).

Host overhead: each launcher caches a *launch plan* per (shapes, strides, dtype, device, window)
(``functools.lru_cache`` on hashable tuples), holding a :class:`Launcher`: the grid and every
argument after the tensors, in the kernel's parameter order. On CUDA the first launch of a plan
goes through Triton's ``JITFunction.run`` (argument binding, specialisation, the compile cache);
the compiled kernel it returns is then kept per pointer alignment and called directly
(``CompiledKernel[grid](*args)``, Triton's own launch path after its cache lookup), and the
device is switched only when the tensors' device is not the current one.
"""

from __future__ import annotations

import functools
import inspect
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


def _triton_version() -> tuple[int, int]:
    import triton

    major, minor = (int("".join(c for c in part if c.isdigit()) or 0) for part in
                    triton.__version__.split(".")[:2])  # fmt: skip
    return major, minor


#: Whether a plan's warmed CUDA kernel is called directly (see :class:`Launcher`); False sends
#: every launch through ``JITFunction.run`` (for comparisons, and a way out should a Triton
#: version change the compiled kernel's calling convention). From Triton 3.3 on, ``run``
#: passes the compiled kernel every bound argument, constexprs included, as the direct call
#: does; Triton 3.2 and older passed only the others.
DIRECT = _triton_version() >= (3, 3)


@functools.cache
def parameter_names(kernel) -> tuple[str, ...]:
    """The parameter names of ``kernel`` (a ``@triton.jit`` function), in order."""
    return tuple(inspect.signature(kernel.fn).parameters)


class Launcher:
    """One planned launch: ``kernel`` over ``grid`` (a 3-tuple) with every argument after the
    first ``num_tensors`` (the tensors) fixed; called with the tensors only
    (``launcher(input, output)``).

    The fixed arguments are ``tail`` (positional, right after the tensors), then the values in
    ``named`` of the remaining parameters in order, constexprs included; the other names of
    ``named`` are launch options (``num_warps`` ...). On CUDA the kernel Triton compiled at the
    first call is kept per pointer alignment (the one property of a tensor argument Triton
    specialises on that the plan does not fix) and called directly afterwards. A missing
    parameter is a ``TypeError`` naming it.

    Example:
        >>> from unfoldconv._args import make_geometry
        >>> from unfoldconv.kernels import _unfold
        >>> geometry = make_geometry(2, 3, 1, 1, 1)
        >>> shape, launcher = _unfold._geometry_plan((2, 3, 8, 8), (192, 64, 8, 1), geometry, None)
        >>> shape, launcher.grid, launcher.options["num_warps"]
        ((2, 27, 64), (2, 1, 1), 4)
    """

    __slots__ = ("_runners", "grid", "kernel", "options", "tail")

    def __init__(self, kernel, grid: tuple[int, int, int], num_tensors: int, tail: tuple, named):
        parameters = parameter_names(kernel)
        names = parameters[num_tensors + len(tail) :]
        missing = [name for name in names if name not in named]
        if missing:
            raise TypeError(f"Launcher of {kernel.fn.__name__} misses arguments {missing}")
        self.kernel = kernel
        self.grid = tuple(grid)
        self.tail = tuple(tail) + tuple(named[name] for name in names)
        self.options = {name: value for name, value in named.items() if name not in parameters}
        self._runners: dict[tuple[bool, ...], object] = {}

    def __call__(self, *tensors: torch.Tensor) -> None:
        device = tensors[0].device
        if device.type != "cuda":
            kernel_for(self.kernel, device)[self.grid](*tensors, *self.tail, **self.options)
        elif is_current(device):
            self._launch_cuda(tensors, device)
        else:
            with torch.cuda.device(device):
                self._launch_cuda(tensors, device)

    def _launch_cuda(self, tensors, device: torch.device) -> None:
        key = tuple(t.data_ptr() % 16 == 0 for t in tensors)  # Triton's pointer specialisation
        runner = self._runners.get(key)
        if runner is not None:
            runner(*tensors, *self.tail)
            return
        compiled = kernel_for(self.kernel, device)[self.grid](*tensors, *self.tail, **self.options)
        if DIRECT and callable(getattr(compiled, "__getitem__", None)):
            self._runners[key] = compiled[self.grid]


#: The plan caches of the launchers (``functools.lru_cache`` functions), see :func:`clear_plans`.
PLAN_CACHES: list = []


def plan_cache(function):
    """``functools.lru_cache`` for a launch-plan builder, registered in :data:`PLAN_CACHES`."""
    cached = functools.lru_cache(maxsize=1024)(function)
    PLAN_CACHES.append(cached)
    return cached


def clear_plans() -> None:
    """Forget every cached launch plan (tests that change what a plan depends on)."""
    for cache in PLAN_CACHES:
        cache.cache_clear()


def is_current(device: torch.device) -> bool:
    """Whether CUDA ``device`` is the current device (no device switch needed to launch)."""
    return device.index is None or device.index == torch.cuda.current_device()


# Elements per program: 16 per thread at 4 warps, enough loads in flight to keep an H100's
# memory busy on a copy while leaving registers for full occupancy.
TILE = 2048
# Launch options of every kernel: 4 warps (see TILE); no floating multiply-add contraction (the
# kernels only copy and add, and an explicit choice keeps Triton's default-change warning quiet).
OPTIONS = {"num_warps": 4, "enable_fp_fusion": False}


def position_tile(num_rows: int, grid: Sequence[int], tile: int | None = None) -> dict[str, int]:
    """The tile of a ``num_rows x prod(grid)`` row-major output over a ``d``-dim position grid:
    ``BLOCK_R`` rows x ``BLOCK_O`` outer x ``BLOCK_W`` inner positions, powers of two sized to
    the grid (at most ``tile`` elements, default :data:`TILE`), and ``SPLIT``: dims
    ``[SPLIT, d)`` form the inner axis, ``[0, SPLIT)`` the outer one (each flattened row-major).

    ``SPLIT = d - 1`` (the last dim alone inner: its coordinate is the lane's index, no
    division) unless merging more dims into the inner axis idles clearly fewer lanes (small or
    odd-sized grids); rows stack when the grid is smaller than the tile.

    Example:
        >>> position_tile(32 * 96 * 9, (32, 32))
        {'SPLIT': 1, 'BLOCK_R': 2, 'BLOCK_O': 32, 'BLOCK_W': 32}
    """
    tile = TILE if tile is None else tile
    d = len(grid)
    best = None
    for split in range(d - 1, -1, -1):
        inner, outer = math.prod(grid[split:]), math.prod(grid[:split])
        block_w = min(next_power_of_2(inner), tile)
        block_o = min(next_power_of_2(outer), tile // block_w)
        block_r = min(next_power_of_2(num_rows), tile // (block_w * block_o))
        programs = cdiv(inner, block_w) * cdiv(outer, block_o) * cdiv(num_rows, block_r)
        used = num_rows * inner * outer / (programs * block_r * block_o * block_w)
        if best is None or used > best[0] * 1.15:  # a division per dim merged: worth 15%
            best = (used, {"SPLIT": split, "BLOCK_R": block_r, "BLOCK_O": block_o,
                           "BLOCK_W": block_w})  # fmt: skip
    return best[1]


def tile_programs(num_rows: int, grid: Sequence[int], blocks: dict[str, int]) -> int:
    """The programs of :func:`position_tile`'s tile over the whole output."""
    split = blocks["SPLIT"]
    return (
        cdiv(num_rows, blocks["BLOCK_R"])
        * cdiv(math.prod(grid[:split]), blocks["BLOCK_O"])
        * cdiv(math.prod(grid[split:]), blocks["BLOCK_W"])
    )


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def row_major_strides(size: Sequence[int]) -> tuple[int, ...]:
    """The strides of a contiguous tensor of ``size`` (elements)."""
    strides, step = [], 1
    for extent in reversed(size):
        strides.append(step)
        step *= extent
    return tuple(reversed(strides))


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

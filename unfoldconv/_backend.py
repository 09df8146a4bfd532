"""The backend switch: which route runs the engine's gather (unfold) and scatter (fold).

- ``"torch"``: the pure-torch route (strided views and copies); every device, every dtype. It
  is the readable reference the kernels are tested against.
- ``"triton"``: one Triton kernel per op (:mod:`unfoldconv.kernels`). Needs Triton, and CUDA
  tensors, or CPU tensors with ``TRITON_INTERPRET=1`` set (Triton's interpreter, for tests).
- ``"auto"`` (the default): Triton for CUDA tensors when Triton imports, the torch route
  otherwise.

The choice is read from, in order: the innermost ``with unfoldconv.backend(name):`` block, the
environment variable ``UNFOLDCONV_BACKEND``, then ``"auto"``. The ``backend()`` blocks are
process-wide, not per thread, so a ``loss.backward()`` inside the block (which autograd runs in
its own threads on CUDA) takes the same route as the forward.

The torch route runs, whatever the choice, for:

- dtypes the kernels do not cover (complex, float8, uint16/32/64; see
  :func:`unfoldconv.kernels.supports`);
- code traced by ``torch.compile``: the compiled graph holds the torch route, which the
  compiler fuses and generates its own kernels for, so ``torch.compile(fullgraph=True)`` traces
  and behaves the same under every backend;
- tensors inside ``torch.func`` transforms (``vmap``, ``grad``, ``jvp``): the kernels see only
  plain tensors.

Autograd of every order is the same on every route: the engine's autograd functions call the
same gather and scatter, whichever route runs them.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch

BACKENDS = ("auto", "torch", "triton")
ENV_VAR = "UNFOLDCONV_BACKEND"

_forced: list[str] = []  # stack of the names set by ``backend()`` blocks


def check_backend(name: object, argument: str = "name") -> str:
    """``name`` if it is one of :data:`BACKENDS`, else a ``ValueError`` naming ``argument``."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{argument} must be one of {BACKENDS}, got {argument}={name!r}")
    return name


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Context manager: run the engine's ops on backend ``name`` inside the block.

    Args:
        name: ``"auto"`` (Triton for CUDA tensors when available, else torch), ``"torch"`` or
            ``"triton"`` (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``).

    Example:
        >>> import torch, unfoldconv
        >>> with unfoldconv.backend("torch"):
        ...     unfoldconv.unfold(torch.randn(1, 2, 5, 5), 3).shape
        torch.Size([1, 18, 9])
    """
    _forced.append(check_backend(name))
    try:
        yield
    finally:
        _forced.pop()


def current_backend() -> str:
    """The backend name in force: the innermost ``backend()`` block, ``UNFOLDCONV_BACKEND``, or
    ``"auto"``."""
    if _forced:
        return _forced[-1]
    return check_backend(os.environ.get(ENV_VAR, "auto"), argument=ENV_VAR)


@functools.cache
def triton_available() -> bool:
    """Whether Triton imports (it ships with CUDA builds of torch)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreting() -> bool:
    """Whether Triton's interpreter is on (``TRITON_INTERPRET=1``): kernels run on CPU tensors."""
    # the values Triton itself reads as true
    return os.environ.get("TRITON_INTERPRET", "").lower() in ("1", "true", "on", "yes", "y")


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether the engine should run ``tensor``'s op through a Triton kernel.

    False while ``torch.compile`` traces and for tensors inside ``torch.func`` transforms (the
    torch route runs there on every backend). Raises ``RuntimeError`` when ``"triton"`` is forced
    but cannot run on ``tensor``: Triton missing, or a CPU tensor without ``TRITON_INTERPRET=1``,
    or a device Triton has no kernels for.
    """
    if torch.compiler.is_compiling() or _functorch_wrapped(tensor):
        return False
    name = current_backend()
    if name == "torch":
        return False
    if name == "auto":
        return tensor.is_cuda and triton_available()
    if not triton_available():
        raise RuntimeError(
            "backend 'triton' needs the triton package (it ships with CUDA builds of torch; "
            "`pip install triton` otherwise)"
        )
    if tensor.is_cuda or (tensor.device.type == "cpu" and triton_interpreting()):
        return True
    if tensor.device.type == "cpu":
        raise RuntimeError(
            "backend 'triton' runs CPU tensors only through Triton's interpreter: set "
            "TRITON_INTERPRET=1 (meant for tests), or use backend 'auto' or 'torch' on the CPU"
        )
    raise RuntimeError(
        f"backend 'triton' runs on CUDA tensors (and on CPU tensors under TRITON_INTERPRET=1), "
        f"got a tensor on {tensor.device}; use backend 'auto' or 'torch' for it"
    )


def _functorch_wrapped(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``torch.func`` wrapper (vmap's batched or a grad/jvp level)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(tensor)

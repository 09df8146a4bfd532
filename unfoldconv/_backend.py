"""The backend switch: which route runs the engine's gather (unfold) and scatter (fold).

- ``"torch"``: the pure-torch route (strided views and copies); every device, every dtype. It
  is the readable reference the kernels are tested against.
- ``"triton"``: one Triton kernel per op (:mod:`unfoldconv.kernels`). Needs Triton, and CUDA
  tensors, or CPU tensors with ``TRITON_INTERPRET=1`` set (Triton's interpreter, for tests).
- ``"auto"`` (the default): Triton for CUDA tensors when Triton imports, the torch route
  otherwise.

The choice is read from, in order: the innermost ``with unfoldconv.backend(name):`` block, the
environment variable ``UNFOLDCONV_BACKEND``, then ``"auto"``. Dtypes the kernels do not cover
take the torch route on every backend (see :func:`unfoldconv.kernels.supports`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
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
    """Whether Triton can be imported (it ships with CUDA builds of torch)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """Whether Triton's interpreter is on (``TRITON_INTERPRET=1``): kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether the engine should run ``tensor``'s op through a Triton kernel.

    Raises ``RuntimeError`` when ``"triton"`` is forced but cannot run on ``tensor``.
    """
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
    if not tensor.is_cuda and not triton_interpreting():
        raise RuntimeError(
            f"backend 'triton' runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1 "
            f"set; got a tensor on {tensor.device}"
        )
    return True

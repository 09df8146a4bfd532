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

Convolutions on the Triton backend have a second switch, the *conv route*
(:func:`conv_route`): ``"auto"`` (the default) and ``"implicit_gemm"`` run convolutions whose
windows overlap through the implicit-GEMM kernels (:mod:`unfoldconv.kernels._conv`: no
columns in memory); ``"unfold"`` keeps the unfold + GEMM (+ fold) route of the engine.
Windows that tile the input (1x1, ViT patches) are a rearrange + GEMM on every route. The choice
is read from the innermost ``with conv_route(name):`` block, then ``UNFOLDCONV_CONV_ROUTE``, then
``"auto"``. ``"auto"`` is implicit GEMM until a GPU has measured both routes (the rule then
goes into :func:`unfoldconv.kernels.conv_wanted`).
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

CONV_ROUTES = ("auto", "implicit_gemm", "unfold")
CONV_ROUTE_ENV_VAR = "UNFOLDCONV_CONV_ROUTE"

_forced_conv_routes: list[str] = []  # stack of the names set by ``conv_route()`` blocks


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


def check_conv_route(name: object, argument: str = "name") -> str:
    """``name`` if it is one of :data:`CONV_ROUTES`, else a ``ValueError`` naming ``argument``."""
    if not isinstance(name, str) or name not in CONV_ROUTES:
        raise ValueError(f"{argument} must be one of {CONV_ROUTES}, got {argument}={name!r}")
    return name


@contextlib.contextmanager
def conv_route(name: str) -> Iterator[None]:
    """Context manager: the route of convolutions on the Triton backend inside the block.

    Args:
        name: ``"auto"`` (implicit GEMM where windows overlap), ``"implicit_gemm"`` (the same,
            explicitly) or ``"unfold"`` (unfold + GEMM through the engine, the route of the
            CPU and of every backend before the implicit-GEMM kernels).

    Example:
        >>> import torch, unfoldconv
        >>> from unfoldconv._backend import conv_route
        >>> with conv_route("unfold"):
        ...     unfoldconv.conv(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)).shape
        torch.Size([1, 3, 3, 3])
    """
    _forced_conv_routes.append(check_conv_route(name))
    try:
        yield
    finally:
        _forced_conv_routes.pop()


def current_conv_route() -> str:
    """The conv route in force: the innermost ``conv_route()`` block, ``UNFOLDCONV_CONV_ROUTE``,
    or ``"auto"``."""
    if _forced_conv_routes:
        return _forced_conv_routes[-1]
    return check_conv_route(os.environ.get(CONV_ROUTE_ENV_VAR, "auto"), argument=CONV_ROUTE_ENV_VAR)

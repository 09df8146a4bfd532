"""Column workspaces on the CPU, reused from call to call instead of allocated afresh.

Why: a workspace of the CPU default (16 MiB) is above glibc's mmap threshold, so every
``new_empty`` maps fresh pages and the first write into each 4 KiB page faults: about 2 us a
page, 8 ms to fill one 16 MiB workspace, 4-5x the cost of the gather that writes it (All-CNN-C
conv4 at batch 32, 1 thread: the first chunk's gather 8.3 ms, the second's, into the same
buffer, 1.7 ms). Freed workspaces are kept here, per thread, and handed out again.

Each :func:`pooled` use takes a buffer no other live use holds (nested uses, generators left
open, threads: each gets its own), and gives it back when it ends. At most
:data:`KEPT_BUFFERS` buffers of at most :data:`MAX_POOLED_BYTES` each are kept per thread;
other devices (the CUDA caching allocator already reuses memory), larger requests, traced
code and functorch transforms get a fresh tensor as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

#: Largest buffer kept (the CPU default workspace is 16 MiB; four times it covers a caller's
#: ``workspace_bytes`` of that order). Larger ones are freed as usual.
MAX_POOLED_BYTES = 64 << 20

#: Buffers kept per thread: the conv backward holds two at once, a generator left open a third.
KEPT_BUFFERS = 4


class _Pool(threading.local):
    def __init__(self) -> None:
        self.free: list[torch.Tensor] = []


_pool = _Pool()
_lock = threading.Lock()


def _poolable(like: torch.Tensor, numel: int) -> bool:
    return (
        like.device.type == "cpu"
        and numel * like.element_size() <= MAX_POOLED_BYTES
        and not torch.compiler.is_compiling()
        and not torch._C._functorch.is_functorch_wrapped_tensor(like)
        and not torch.is_inference_mode_enabled()  # inference tensors cannot be reused outside
    )


@contextlib.contextmanager
def pooled(like: torch.Tensor, numel: int) -> Iterator[torch.Tensor]:
    """A 1-d uninitialised tensor of ``numel`` elements of ``like``'s dtype and device, held
    for the duration of the block (see the module docstring).

    Example:
        >>> with pooled(torch.empty(0), 1000) as workspace:
        ...     workspace.shape
        torch.Size([1000])
    """
    if not _poolable(like, numel):
        yield like.new_empty(numel)
        return
    free = _pool.free
    # a generator left open may be finalised by the garbage collector in another thread,
    # which then gives its buffer back to this thread's list: the list is locked
    with _lock:
        fits = [i for i, b in enumerate(free) if b.dtype == like.dtype and b.numel() >= numel]
        # the smallest that fits, popped by position (== on tensors compares their elements)
        buffer = free.pop(min(fits, key=lambda i: free[i].numel())) if fits else None
    if buffer is None:
        buffer = like.new_empty(numel)
    try:
        yield buffer[:numel]
    finally:
        with _lock:
            free.append(buffer)
            if len(free) > KEPT_BUFFERS:
                free.pop(min(range(len(free)), key=lambda i: free[i].numel()))


def clear() -> None:
    """Free this thread's kept workspaces."""
    _pool.free.clear()

"""Work sharing for CPU loops that torch would run as many parallel regions.

Why: every torch op above its grain size is one OpenMP parallel region with a static split of
the work, and each region waits at its end for every thread. When another process shares the
cores, the OS deschedules one of them for a time slice (measured here: about 8 ms per region
with one busy process beside 2 threads), so a loop of K ops costs K time slices.
:func:`run_rows` instead cuts the work into chunks of rows that the calling thread and
``torch.get_num_threads() - 1`` pool threads take from a shared counter, each chunk run
serially by a compiled kernel that releases the GIL. A pool thread that has not started by
the time the caller runs out of chunks is cancelled, so a descheduled thread costs at most the
one chunk it holds, not a whole pass.

Used by the compiled fold (:mod:`unfoldconv._cpu_fold`). Tried for the torch route of the fold
too, each chunk's ops under torch's grain size: quiet, every small op hands the GIL between the
threads and the fold ran 2-4x slower (see :func:`unfoldconv._engine._add_offsets`).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
from collections.abc import Callable

import torch

#: Below this many column elements one thread folds everything: handing work to the pool costs
#: tens of microseconds, which only pays off above ~64k elements (a 256 KiB float32 fold).
SERIAL_BELOW = 1 << 16

#: Chunks per thread: enough that a thread the OS deschedules holds up at most ~1/8 of its
#: share (the others take the rest of the counter), few enough that taking a chunk (a Python
#: call into the kernel, a few microseconds) stays negligible.
CHUNKS_PER_THREAD = 8


_pool_lock = threading.Lock()
_pool: dict[str, object] = {"executor": None, "workers": 0}


def _executor(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """The shared pool of ``workers`` threads (rebuilt when ``torch.get_num_threads()`` changes)."""
    with _pool_lock:
        if _pool["executor"] is None or _pool["workers"] != workers:
            if _pool["executor"] is not None:
                _pool["executor"].shutdown(wait=False)  # its queued tasks still run
            _pool["executor"] = concurrent.futures.ThreadPoolExecutor(
                workers, thread_name_prefix="unfoldconv-fold"
            )
            _pool["workers"] = workers
        return _pool["executor"]


def _forget_pool_after_fork() -> None:
    # a forked child (a DataLoader worker) has none of the parent's threads
    _pool["executor"], _pool["workers"] = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def run_rows(
    body: Callable[[int, int], None], rows: int, work: int, chunk: int | None = None
) -> None:
    """Call ``body(r0, r1)`` over ``range(rows)``: serially under :data:`SERIAL_BELOW`
    elements of ``work``, else in chunks shared by the caller and the pool threads (``chunk``
    rows each, default :data:`CHUNKS_PER_THREAD` chunks per thread).

    Example:
        >>> seen = []
        >>> run_rows(lambda r0, r1: seen.extend(range(r0, r1)), 10, work=10**6, chunk=3)
        >>> sorted(seen) == list(range(10))
        True
    """
    threads = torch.get_num_threads()
    if threads <= 1 or rows < 2 or work < SERIAL_BELOW:
        body(0, rows)
        return
    if chunk is None:
        chunk = max(1, rows // (threads * CHUNKS_PER_THREAD))
    counter = itertools.count()  # next() is atomic under the GIL

    def take_chunks() -> None:
        while True:
            r0 = next(counter) * chunk
            if r0 >= rows:
                return
            body(r0, min(rows, r0 + chunk))

    pool = _executor(threads - 1)
    futures = [pool.submit(take_chunks) for _ in range(threads - 1)]
    take_chunks()
    for future in futures:
        if not future.cancel():  # started: wait for its chunk in flight (and its errors)
            future.result()

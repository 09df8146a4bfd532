"""How a case is measured: time with ``torch.utils.benchmark``, peak memory, one :class:`Row` each.

Every implementation of a case is timed side by side in the same process (median of at least
four blocked runs, see :func:`time_ms`), forward and forward+backward, after one warm-up call;
ratios are taken between the implementations of the same case, so machine noise mostly cancels.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over one call, minus what was
allocated before it. On CPU, one call runs under ``torch.profiler`` with ``profile_memory=True``;
its allocation and free events (``[memory]``) are replayed in time order and the highest running
total is the peak. Either way it is what the call allocates on top of what already exists
(inputs and parameters not included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils import benchmark

from benchmarking.cases import MODES, Case, Thunk


@dataclass
class Row:
    """One implementation of one case in one mode: median time (ms), peak memory (MiB) and the
    least bytes the op moves (``None`` for layers)."""

    group: str
    series: str
    case: str
    mode: str
    impl: str
    time_ms: float
    peak_mib: float
    bytes_moved: int | None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(thunk: Thunk, min_run_time: float, num_threads: int) -> float:
    """Median time of ``thunk`` in milliseconds.

    ``torch.utils.benchmark``'s ``adaptive_autorange``: at least 4 timed blocks and
    ``min_run_time`` seconds, then more until their spread (IQR / median) is under 10% or
    ``10 * min_run_time`` seconds have passed; so an op slower than ``min_run_time`` still gets a
    median of several runs, which a busy machine needs.
    """
    timer = benchmark.Timer(stmt="thunk()", globals={"thunk": thunk}, num_threads=num_threads)
    measurement = timer.adaptive_autorange(
        threshold=0.1, min_run_time=min_run_time, max_run_time=10 * min_run_time
    )
    return measurement.median * 1e3


def peak_memory_mib(thunk: Thunk, device: torch.device) -> float:
    """Peak memory (MiB) that one call of ``thunk`` allocates beyond what already exists."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        thunk()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as profile:
        thunk()
    allocations = []  # (time, bytes): positive for an allocation, negative for a free
    pending = list(profile.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        pending.extend(event.children)
        if event.name == "[memory]":
            allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
    running = peak = 0
    for _, size in sorted(allocations):
        running += size
        peak = max(peak, running)
    return peak / 2**20


def run_case(
    case: Case, device: torch.device, min_run_time: float, num_threads: int, memory: bool
) -> list[Row]:
    """Time (and with ``memory``, measure) every implementation of ``case`` in both modes, on
    ``case.threads`` threads where the case sets them, else ``num_threads``."""
    num_threads = case.threads or num_threads
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)  # the warm-up and memory runs too, not only the timer
    try:
        return [
            row
            for mode in MODES
            for row in _run_mode(case, mode, device, min_run_time, num_threads, memory)
        ]
    finally:
        torch.set_num_threads(previous_threads)


def _run_mode(
    case: Case, mode: str, device: torch.device, min_run_time: float, num_threads: int, memory: bool
) -> list[Row]:
    """Every implementation of ``case`` in one mode."""
    bytes_moved = None if case.bytes_moved is None else case.bytes_moved * (1 + MODES.index(mode))
    rows = []
    for impl, factory in case.impls.items():
        thunk = factory(mode)
        thunk()  # warm-up (allocator, lazy init, cuDNN's algorithm search)
        synchronize(device)

        def synced(thunk=thunk):
            thunk()
            synchronize(device)

        elapsed = time_ms(synced, min_run_time, num_threads)
        peak = peak_memory_mib(thunk, device) if memory else math.nan
        rows.append(Row(case.group, case.series, case.name, mode, impl, elapsed, peak, bytes_moved))
    return rows

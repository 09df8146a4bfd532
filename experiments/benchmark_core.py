"""Measurement machinery shared by every benchmark case: timing, peak memory, reports.

A :class:`Case` is one shape with several implementations of the same computation (ours,
torch's, ``unfoldNd``'s, the copy floor). Every implementation is timed side by side in the
same process with ``torch.utils.benchmark`` (median of blocked runs), forward and
forward+backward, and its peak memory is measured; ratios are taken against the other
implementations of the same case, so machine noise mostly cancels.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over one call, minus what was
allocated before it. On CPU, one call runs under ``torch.profiler`` with ``profile_memory=True``;
its allocation and free events (``[memory]``) are replayed in time order and the highest running
total is the peak
(memory the call allocates on top of what already exists: inputs and parameters not included).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils import benchmark

Thunk = Callable[[], object]
# builds a zero-argument callable for a mode ("forward" or "forward+backward")
Factory = Callable[[str], Thunk]

MODES = ("forward", "forward+backward")


@dataclass
class Case:
    """One shape of one operation, with its competing implementations.

    Args:
        group: what is measured, e.g. ``"unfold"`` or ``"Conv2d"``.
        name: the shape, readable, e.g. ``"conv2 b32 96x32x32 k3 p1"``.
        ours: key of our implementation in ``impls``.
        impls: implementation name -> factory of a zero-argument callable for a mode.
        modes: which of :data:`MODES` to run.
    """

    group: str
    name: str
    ours: str
    impls: dict[str, Factory]
    modes: Sequence[str] = MODES
    notes: str = ""


@dataclass
class Row:
    group: str
    case: str
    mode: str
    impl: str
    time_ms: float
    peak_mb: float
    extra: dict = field(default_factory=dict)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(thunk: Thunk, min_run_time: float, num_threads: int) -> float:
    """Median time of ``thunk`` in milliseconds (``torch.utils.benchmark``)."""
    timer = benchmark.Timer(stmt="thunk()", globals={"thunk": thunk}, num_threads=num_threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def peak_memory_mb(thunk: Thunk, device: torch.device) -> float:
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
    rows = []
    for mode in case.modes:
        for impl, factory in case.impls.items():
            thunk = factory(mode)
            thunk()  # warm-up (allocator, lazy init)
            synchronize(device)

            def synced(thunk=thunk):
                thunk()
                synchronize(device)

            elapsed = time_ms(synced, min_run_time, num_threads)
            peak = peak_memory_mb(thunk, device) if memory else math.nan
            rows.append(Row(case.group, case.name, mode, impl, elapsed, peak))
    return rows


def ratio_table(rows: Sequence[Row], cases: Sequence[Case]) -> list[dict]:
    """One record per (case, mode): every impl's time, and ours / each other impl."""
    ours = {(case.group, case.name): case.ours for case in cases}
    records: dict[tuple, dict] = {}
    for row in rows:
        key = (row.group, row.case, row.mode)
        record = records.setdefault(key, {"group": row.group, "case": row.case, "mode": row.mode})
        record[f"{row.impl} ms"] = row.time_ms
        record[f"{row.impl} MiB"] = row.peak_mb
    for (group, case, _), record in records.items():
        mine = ours[(group, case)]
        for key in list(record):
            if key.endswith(" ms") and key != f"{mine} ms":
                other = key[: -len(" ms")]
                record[f"{mine}/{other}"] = record[f"{mine} ms"] / record[key]
    return list(records.values())


def summary(records: Sequence[dict]) -> list[dict]:
    """Median and worst of each ratio column, per (group, mode)."""
    grouped: dict[tuple, list[dict]] = {}
    for record in records:
        grouped.setdefault((record["group"], record["mode"]), []).append(record)
    out = []
    for (group, mode), members in grouped.items():
        ratio_keys = sorted({k for m in members for k in m if "/" in k})
        for key in ratio_keys:
            values = sorted(m[key] for m in members if key in m and not math.isnan(m[key]))
            if not values:
                continue
            middle = len(values) // 2
            median = (
                values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
            )
            out.append(
                {
                    "group": group,
                    "mode": mode,
                    "ratio": key,
                    "median": median,
                    "worst": values[-1],
                    "best": values[0],
                    "cases": len(values),
                }
            )
    return out


def _format(value: object) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def markdown_table(records: Sequence[dict]) -> str:
    if not records:
        return ""
    columns = list(dict.fromkeys(k for record in records for k in record))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in records:
        lines.append("| " + " | ".join(_format(record.get(c, math.nan)) for c in columns) + " |")
    return "\n".join(lines)


def write_reports(
    rows: Sequence[Row], cases: Sequence[Case], out_dir: Path, header: str
) -> dict[str, Path]:
    """Write ``benchmark.csv`` (raw rows), ``benchmark.md`` (ratios) and ``benchmark.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "benchmark.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "case", "mode", "impl", "time_ms", "peak_mib"])
        for row in rows:
            writer.writerow([row.group, row.case, row.mode, row.impl, row.time_ms, row.peak_mb])

    records = ratio_table(rows, cases)
    md_path = out_dir / "benchmark.md"
    parts = [header, "", "## Summary (ratio < 1: ours is faster)", ""]
    parts.append(markdown_table(summary(records)))
    for group in dict.fromkeys(r["group"] for r in records):
        parts += [
            "",
            f"## {group}",
            "",
            markdown_table([r for r in records if r["group"] == group]),
        ]
    md_path.write_text("\n".join(parts) + "\n")

    png_path = out_dir / "benchmark.png"
    plot_ratios(records, cases, png_path)
    return {"csv": csv_path, "markdown": md_path, "plot": png_path}


def plot_ratios(records: Sequence[dict], cases: Sequence[Case], path: Path) -> None:
    """One panel per (group, mode): time of ours relative to each other implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["group"], r["mode"]) for r in records))
    cols = 2
    nrows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(12, 3.2 * nrows), squeeze=False)
    for ax, (group, mode) in zip(axes.flat, panels):
        members = [r for r in records if r["group"] == group and r["mode"] == mode]
        keys = sorted({k for m in members for k in m if "/" in k})
        width = 0.8 / max(1, len(keys))
        for i, key in enumerate(keys):
            values = [m.get(key, math.nan) for m in members]
            positions = [j + i * width for j in range(len(members))]
            ax.bar(positions, values, width=width, label=key)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(members))])
        ax.set_xticklabels([m["case"] for m in members], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{group} — {mode} (time ratio, log)", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The benchmark's tables: raw rows (CSV), ratios per case and their summary (Markdown).

Bandwidth: ``GB/s`` = the bytes an engine op reads + writes at the least (input once, output
once; twice that for forward+backward) / its time; ``% of copy`` = the same bytes moved by a
device-to-device copy (the ``copy`` implementation) as a share: 100% runs at copy speed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from benchmarking.cases import OURS
from benchmarking.timing import Row
from training.report import markdown_table, write_csv


def _copy_times(rows: Sequence[Row]) -> dict[tuple, float]:
    return {(r.group, r.case, r.mode): r.time_ms for r in rows if r.impl == "copy"}


def raw_records(rows: Sequence[Row], meta: dict) -> list[dict]:
    """One record per row, with its bandwidth, its share of the copy's and ``meta`` columns."""
    copy_ms = _copy_times(rows)
    records = []
    for r in rows:
        copy = copy_ms.get((r.group, r.case, r.mode))
        records.append(
            {
                "group": r.group,
                "series": r.series,
                "case": r.case,
                "mode": r.mode,
                "impl": r.impl,
                "time_ms": r.time_ms,
                "peak_mib": r.peak_mib,
                "bytes": r.bytes_moved,
                "gb_per_s": None if r.bytes_moved is None else r.bytes_moved / r.time_ms / 1e6,
                "copy_share": None if copy is None else copy / r.time_ms,
                **meta,
            }
        )
    return records


def ratio_records(rows: Sequence[Row]) -> list[dict]:
    """One record per (case, mode): every implementation's time, ``unfoldconv/<other>`` time
    ratios (< 1: ours is faster), bandwidth of ours and of the copy, and peak memory."""
    copy_ms = _copy_times(rows)
    records: dict[tuple, dict] = {}
    for r in rows:
        key = (r.group, r.case, r.mode)
        record = records.setdefault(
            key, {"group": r.group, "series": r.series, "case": r.case, "mode": r.mode}
        )
        record[f"{r.impl} ms"] = r.time_ms
        record[f"{r.impl} MiB"] = r.peak_mib
        if r.impl == OURS and r.bytes_moved is not None:
            record[f"{OURS} GB/s"] = r.bytes_moved / r.time_ms / 1e6
            if key in copy_ms:
                record["copy GB/s"] = r.bytes_moved / copy_ms[key] / 1e6
                record[f"{OURS} % of copy"] = 100 * copy_ms[key] / r.time_ms
    for record in records.values():
        ours = record.get(f"{OURS} ms")
        for key in [k for k in record if k.endswith(" ms") and k != f"{OURS} ms"]:
            if ours is not None:
                record[f"{OURS}/{key[: -len(' ms')]}"] = ours / record[key]
    return [_ordered(record) for record in records.values()]


def _ordered(record: dict) -> dict:
    """Columns in reading order: names, times, ratios, bandwidth, memory."""

    def rank(key: str) -> int:
        if key.endswith(" ms"):
            return 1
        if "/" in key and not key.endswith("GB/s"):
            return 2
        if key.endswith(("GB/s", "% of copy")):
            return 3
        return 4 if key.endswith(" MiB") else 0

    return {key: record[key] for key in sorted(record, key=rank)}


def summary(records: Sequence[dict]) -> list[dict]:
    """Median, worst and best of each ``unfoldconv/<other>`` ratio per (group, series, mode)."""
    grouped: dict[tuple, list[dict]] = {}
    for record in records:
        grouped.setdefault((record["group"], record["series"], record["mode"]), []).append(record)
    out = []
    for (group, series, mode), members in grouped.items():
        for key in dict.fromkeys(k for m in members for k in m if k.startswith(f"{OURS}/")):
            values = [m[key] for m in members if key in m]
            out.append(
                {
                    "group": group,
                    "series": series,
                    "mode": mode,
                    "ratio": key,
                    "median": statistics.median(values),
                    "worst": max(values),
                    "best": min(values),
                    "cases": len(values),
                }
            )
    return out


def write_tables(
    rows: Sequence[Row], out_dir: Path, stem: str, header: str, meta: dict
) -> tuple[dict[str, Path], list[dict], list[dict]]:
    """Write ``<stem>.csv`` (raw rows) and ``<stem>.md`` (summary, then one table per group).

    Returns the paths, the ratio records and the summary.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(raw_records(rows, meta), out_dir / f"{stem}.csv")
    records = ratio_records(rows)
    overview = summary(records)
    parts = [header, "", "## Summary (time ratios; < 1: unfoldconv is faster)", ""]
    parts.append(markdown_table(overview))
    for group in dict.fromkeys(r["group"] for r in records):
        members = [
            {k: v for k, v in r.items() if k != "group"} for r in records if r["group"] == group
        ]
        parts += ["", f"## {group}", "", markdown_table(members)]
    md_path = out_dir / f"{stem}.md"
    md_path.write_text("\n".join(parts) + "\n")
    return {"csv": csv_path, "markdown": md_path}, records, overview

"""The benchmark's plot: per (group, mode), unfoldconv's time relative to the others'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from benchmarking.cases import OURS
from training.report import pyplot


def plot_ratios(records: Sequence[dict], path: Path) -> Path | None:
    """Bars of every ``unfoldconv/<other>`` ratio per case (log scale, 1 marked); one panel per
    (group, mode). Returns ``path``, or ``None`` when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None
    panels = list(dict.fromkeys((r["group"], r["mode"]) for r in records))
    cols = 2
    nrows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(12, 3.2 * nrows), squeeze=False)
    for ax, (group, mode) in zip(axes.flat, panels):
        members = [r for r in records if r["group"] == group and r["mode"] == mode]
        keys = list(dict.fromkeys(k for m in members for k in m if k.startswith(f"{OURS}/")))
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
    return path

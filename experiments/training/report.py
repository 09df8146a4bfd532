"""Report helpers shared by the experiments and the benchmark: Markdown and CSV tables, and the
training plots (curves from CSVLogger metrics, time and memory bars)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path


def format_value(value: object) -> str:
    """A table cell: NaN/None as ``—``, floats with 3 significant digits (whole numbers from
    1000 up), anything else as ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows``; ``columns`` defaults to every key, in first-seen order.

    Example:
        >>> print(markdown_table([{"op": "fold", "ratio": 0.51234}, {"op": "unfold"}]))
        | op | ratio |
        |---|---|
        | fold | 0.512 |
        | unfold | — |
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(rows: Sequence[dict], path: Path, columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` to ``path`` (columns as in :func:`markdown_table`; missing cells empty)."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def read_metrics(path: Path) -> list[dict]:
    """Rows of a CSVLogger ``metrics.csv`` (empty cells dropped, numbers as floats)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or ``None`` (with a printed note)
    when matplotlib is not installed: plots are optional, tables are not."""
    try:
        import matplotlib
    except ImportError:
        print("note: matplotlib is not installed; plots skipped")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(rows: Sequence[dict], path: Path) -> None:
    """Training loss per step and train/val accuracy per epoch, one colour per ``variant``
    (each row names its CSVLogger file in ``metrics_csv``)."""
    plt = pyplot()
    if plt is None:
        return
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for i, r in enumerate(rows):
        metrics = read_metrics(Path(r["metrics_csv"]))
        steps = [(m["step"], m["train_loss_step"]) for m in metrics if "train_loss_step" in m]
        ax_loss.plot(*zip(*steps), color=f"C{i}", label=r["variant"])
        for key, style in (("train_acc", "--"), ("val_acc", "-")):
            pts = [(m["epoch"] + 1, m[key]) for m in metrics if key in m]
            ax_acc.plot(*zip(*pts), style, color=f"C{i}", marker="o", label=f"{r['variant']} {key}")
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


RESOURCE_BARS = (("time_per_epoch_s", "time per epoch (s)"), ("peak_mem_mib", "peak memory (MiB)"))


def plot_resources(
    rows: Sequence[dict], path: Path, bars: Sequence[tuple[str, str]] = RESOURCE_BARS
) -> None:
    """One bar chart per ``(key, label)`` of ``bars`` (default: median training time per epoch
    and peak memory), one bar per ``variant``."""
    plt = pyplot()
    if plt is None:
        return
    names = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, len(bars), figsize=(4.5 * len(bars), 3.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], bars):
        drawn = ax.bar(names, [r[key] for r in rows], color="C0")
        ax.bar_label(drawn, fmt="%.3g")
        ax.set(ylabel=label, title=label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

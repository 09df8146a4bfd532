"""The comparison's report: init-time output differences, the table (CSV + Markdown), plots."""

from __future__ import annotations

import csv
from pathlib import Path

import torch


@torch.no_grad()
def copy_weights(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy an :class:`AllCNNC`'s weights into another; a locally connected layer gets the
    conv's kernel and bias at every output position."""
    for a, b in zip(src.weight_layers(), dst.weight_layers()):
        if b.weight.dim() == a.weight.dim():
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
        else:  # LC weight (*out_spatial, out, in, kh, kw), bias (out, *out_spatial)
            b.weight.copy_(a.weight.expand_as(b.weight))
            b.bias.copy_(a.bias.view(-1, 1, 1).expand_as(b.bias))


@torch.no_grad()
def init_output_differences(variants, seed: int, n: int = 8) -> dict[str, float]:
    """Largest ``|variant(x) - native(x)|`` at initialisation, eval mode, on ``n`` synthetic
    images ``x`` ``(n, 3, 32, 32)``; every variant is built after ``torch.manual_seed(seed)``.
    ``lc`` first gets native's weights (see :func:`copy_weights`)."""
    from experiments.allcnnc_net import AllCNNC
    from experiments.synthetic import make_synthetic

    x, _ = make_synthetic(n, seed=seed + 12345)

    def build(impl: str) -> AllCNNC:
        torch.manual_seed(seed)
        return AllCNNC(conv_impl=impl).eval()

    native = build("native")
    ref = native(x)
    diffs = {}
    for v in variants:
        net = build(v)
        if v == "lc":
            copy_weights(native, net)
        diffs[v] = (net(x) - ref).abs().max().item()
    return diffs


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict], columns) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def read_metrics(path: Path) -> list[dict]:
    """Rows of a CSVLogger ``metrics.csv`` (empty cells dropped, numbers as floats)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_curves(rows: list[dict], path: Path) -> None:
    """Training loss per step and train/val accuracy per epoch, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (chance 0.01)")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_resources(rows: list[dict], path: Path) -> None:
    """Bars: median training time per epoch and peak memory, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, label in (
        (axes[0], "time_per_epoch_s", "time per epoch (s)"),
        (axes[1], "peak_mem_mib", "peak memory (MiB)"),
    ):
        bars = ax.bar(names, [r[key] for r in rows], color="C0")
        ax.bar_label(bars, fmt="%.1f")
        ax.set(ylabel=label, title=label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(rows: list[dict], out: Path, columns) -> str:
    """Write ``results.csv``, ``results.md``, ``curves.png``, ``resources.png`` under ``out``;
    return the Markdown table."""
    out = Path(out)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(rows, columns)
    (out / "results.md").write_text(
        "# All-CNN-C: native vs unfoldconv (synthetic CIFAR-100-shaped data)\n\n" + table + "\n"
    )
    plot_curves(rows, out / "curves.png")
    plot_resources(rows, out / "resources.png")
    return table

"""The offline default run: All-CNN-C with native vs ``unfoldconv`` convolutions, side by side.

``python experiments/allcnnc.py [--variants native unfold lc] [--epochs 3] [--out DIR]``
trains each variant on the synthetic CIFAR-100-shaped set (same seed, so same initial
weights for native/unfold and the same data order), one after the other, and writes to
``--out`` (default ``results/allcnnc/``):

* ``results.csv`` / ``results.md``: per variant the median training time per epoch
  (training batches only, validation excluded; the median resists a disturbed epoch on a
  shared machine; ``<variant>/summary.json`` has every epoch's), peak memory, final training and
  validation accuracy, and the largest absolute output difference from native at
  initialisation (eval mode, a fixed batch; for ``lc`` after copying native's weights into
  the locally connected layer, whose own init draws different numbers);
* ``curves.png`` (training loss per step, accuracy per epoch) and ``resources.png``
  (time and memory bars); ``<variant>/metrics.csv`` (Lightning's CSVLogger).

Peak memory: each variant is trained in its own subprocess
(``python -m experiments.compare --worker VARIANT ...``), so that one variant's
allocations cannot hide another's. On CPU the figure is that process's peak resident set
size, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (it includes the interpreter, torch
and the data, about the same for all variants); ``mem_over_start_mib`` is how far the peak
rose during training above the peak before it. On CUDA it is
``torch.cuda.max_memory_allocated()`` (tensors only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("native", "unfold", "lc")
COLUMNS = (
    "variant",
    "time_per_epoch_s",
    "peak_mem_mib",
    "mem_over_start_mib",
    "train_acc",
    "val_acc",
    "max_abs_diff_init",
)


def positive_int(text: str) -> int:
    """argparse type: an int > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive float, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python experiments/allcnnc.py",
        description="Offline comparison of All-CNN-C with native and unfoldconv convolutions "
        "on synthetic CIFAR-100-shaped data. For the LightningCLI use a subcommand: "
        "python experiments/allcnnc.py fit --config configs/synthetic.yaml",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=["native", "unfold"],
        help="conv implementations to train, in this order",
    )  # fmt: skip
    p.add_argument("--epochs", type=positive_int, default=3, help="epochs per variant")
    p.add_argument("--n-train", type=positive_int, default=1024, help="synthetic train images")
    p.add_argument("--n-val", type=positive_int, default=256, help="synthetic val images")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, data and its order")
    p.add_argument("--out", type=Path, default=Path("results/allcnnc"), help="results folder")
    p.add_argument("--no-progress-bar", action="store_true")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)  # internal
    return p


def worker_args(args: argparse.Namespace, variant: str) -> list[str]:
    """The command line that trains ``variant`` in a fresh Python process."""
    cmd = [sys.executable, "-m", "experiments.compare", "--worker", variant]
    cmd += ["--epochs", str(args.epochs), "--n-train", str(args.n_train)]
    cmd += ["--n-val", str(args.n_val), "--batch-size", str(args.batch_size)]
    cmd += ["--lr", repr(args.lr), "--seed", str(args.seed), "--out", str(args.out)]
    return cmd + (["--no-progress-bar"] if args.no_progress_bar else [])


def require_unfoldconv(variants) -> None:
    """Raise ``RuntimeError`` early if a variant needs ``unfoldconv.layers`` and it is absent."""
    if set(variants) <= {"native"}:
        return
    try:
        from unfoldconv.layers import Conv2d, LocallyConnected2d  # noqa: F401
    except ImportError as err:
        raise RuntimeError(
            f"variants {list(variants)}: 'unfold' and 'lc' need unfoldconv.layers.Conv2d and "
            f"LocallyConnected2d, which cannot be imported ({err}); run with --variants native"
        ) from err


# ---------------------------------------------------------------- in the worker process


def _peak_memory_mib() -> float:
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return kib / (2**20 if sys.platform == "darwin" else 2**10)


def train_variant(args: argparse.Namespace, variant: str) -> dict:
    """Train ``variant`` in this process; write and return its summary (see module doc)."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger

    from experiments.data import SyntheticCIFAR100DataModule
    from experiments.epoch_timer import EpochTimer
    from experiments.lit_classifier import LitClassifier

    pl.seed_everything(args.seed, verbose=False)
    data = SyntheticCIFAR100DataModule(
        n_train=args.n_train, n_val=args.n_val, n_test=1, batch_size=args.batch_size,
        seed=args.seed,
    )  # fmt: skip
    model = LitClassifier(
        conv_impl=variant,
        milestones=(),
        optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
    )
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="auto",
        devices=1,
        logger=CSVLogger(args.out, name=variant, version="logs"),
        callbacks=[timer],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=not args.no_progress_bar,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    start_mib = _peak_memory_mib()
    trainer.fit(model, datamodule=data)
    peak_mib = _peak_memory_mib()
    m = trainer.callback_metrics
    summary = {
        "variant": variant,
        "time_per_epoch_s": statistics.median(timer.epoch_times),
        "epoch_times_s": timer.epoch_times,
        "peak_mem_mib": peak_mib,
        "mem_over_start_mib": peak_mib - start_mib,
        "train_acc": float(m["train_acc"]),
        "val_acc": float(m["val_acc"]),
        "device": str(model.device),
        "metrics_csv": str(Path(trainer.logger.log_dir) / "metrics.csv"),
    }
    (Path(args.out) / variant / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# ---------------------------------------------------------------- in the parent process


def run_worker(args: argparse.Namespace, variant: str) -> dict:
    """Train ``variant`` in a subprocess (its output goes to ours); return its summary."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    subprocess.run(worker_args(args, variant), cwd=ROOT, env=env, check=True)
    return json.loads((Path(args.out) / variant / "summary.json").read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse ``argv``, run the comparison (or, with ``--worker``, one variant); return rows."""
    args = build_parser().parse_args(argv)
    args.out = args.out.resolve()
    if args.worker:
        return [train_variant(args, args.worker)]
    variants = list(dict.fromkeys(args.variants))
    require_unfoldconv(variants)
    from experiments.report import init_output_differences, write_report

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    diffs = init_output_differences(variants, args.seed)
    rows = []
    for variant in variants:
        print(f"\n=== training {variant} ===", flush=True)
        rows.append({**run_worker(args, variant), "max_abs_diff_init": diffs[variant]})
    table = write_report(rows, args.out, COLUMNS)
    print("\n" + table)
    print(f"results in {args.out}; whole run {time.perf_counter() - t0:.1f} s")
    return rows


if __name__ == "__main__":
    main()

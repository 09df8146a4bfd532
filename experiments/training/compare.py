"""The default comparison: train variants of one experiment side by side through its LightningCLI.

A variant is the experiment's base config with the variant's own YAML stacked on it; it is
trained by the same command a user types,
``python <script> fit --config BASE --config VARIANT [overrides]``, each in its own process (so
that one variant's allocations cannot hide another's peak memory), one after the other, with the
same seed and data order (both come from the configs). Overrides (``--trainer.*``, ``--model.*``,
``--data.*``, ``--seed_everything``) go to every variant, so the defaults live in the YAML files
and nowhere else. Written to ``out``:

* ``results.csv`` / ``results.md``: per variant the median training time per epoch, peak memory
  (see :mod:`training.run_summary`), final training and validation accuracy, and
  any ``extra_columns`` the experiment adds (scalars its callbacks put in
  ``trainer.callback_metrics``, e.g. ``stem_fwd_bwd_ms``), and
  ``max_abs_diff_init``, the largest absolute difference of the model's outputs from the first
  variant's at initialisation (eval mode, the first validation batch; a variant whose parameters
  have other shapes first gets the first variant's weights through ``align``);
* ``curves.png`` and ``resources.png`` (bars of time per epoch, peak memory and each of
  ``extra_bars``); ``<variant>/logs/`` (CSVLogger metrics, the config as
  run, ``hparams.yaml``) and ``<variant>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from training.cli import cli_main
from training.report import RESOURCE_BARS, markdown_table, plot_curves, plot_resources, write_csv

COLUMNS = (
    "variant",
    "time_per_epoch_s",
    "peak_mem_mib",
    "mem_over_start_mib",
    "train_acc",
    "val_acc",
    "max_abs_diff_init",
)
OVERRIDE_PREFIXES = ("--trainer.", "--model.", "--data.", "--seed_everything")
Align = Callable[[torch.nn.Module, torch.nn.Module], None]


def build_parser(prog: str, variants: Sequence[str], default_variants: Sequence[str], out: Path):
    """The comparison's own options; everything else must be a CLI override."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the variants side by side through the LightningCLI (same seed, same "
        "data order) and write a table and plots. Other arguments are LightningCLI overrides "
        f"passed to every variant ({', '.join(p + '*' for p in OVERRIDE_PREFIXES)}), e.g. "
        "--trainer.max_epochs=1. A subcommand (fit, validate, test, predict) runs the "
        f"LightningCLI itself: {prog} fit --config configs/<name>.yaml",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--variants", nargs="+", choices=list(variants), default=list(default_variants),
        help="variants to train, in this order (variant NAME reads configs/NAME.yaml)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=out, help="results folder")
    return parser


def fit_command(script: Path, configs: Sequence[Path], overrides: Sequence[str]) -> list[str]:
    """``python script fit --config ... overrides``: one variant's training, as a user runs it."""
    command = [sys.executable, str(script), "fit"]
    for config in configs:
        command += ["--config", str(config)]
    return command + list(overrides)


def worker_overrides(out: Path, variant: str) -> list[str]:
    """Where a variant's logs and summary go: a CSVLogger under ``out/variant/logs`` and a
    :class:`training.run_summary.RunSummary` writing ``out/variant/summary.json``."""
    logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(out), "name": variant, "version": "logs"},
    }
    summary = {
        "class_path": "training.run_summary.RunSummary",
        "init_args": {"path": str(out / variant / "summary.json")},
    }
    return [f"--trainer.logger={json.dumps(logger)}", f"--trainer.callbacks+={json.dumps(summary)}"]


@torch.no_grad()
def init_output_differences(
    configs: dict[str, list[Path]], overrides: Sequence[str], align: Align | None
) -> dict[str, float]:
    """``max |model(x) - first model(x)|`` per variant at initialisation (see module doc).

    Each model is instantiated by the CLI from the variant's configs and ``overrides`` (seeded
    by its ``seed_everything``), ``x`` is the first validation batch of the first variant's data.
    """
    reference = x = None
    diffs = {}
    for variant, files in configs.items():
        args = [f"--config={f}" for f in files] + [*overrides, "--trainer.logger=false"]
        cli = cli_main(args, run=False)
        model = cli.model.eval()
        if reference is None:
            data = cli.datamodule
            data.setup("validate")
            x, _ = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
            reference, ref_out = model, model(x)
        shapes = [p.shape for p in model.parameters()]
        if shapes != [p.shape for p in reference.parameters()]:
            if align is None:
                diffs[variant] = float("nan")
                continue
            align(reference, model)
        diffs[variant] = (model(x) - ref_out).abs().max().item()
    return diffs


def compare_main(
    argv: Sequence[str],
    *,
    script: Path,
    base_config: Path,
    variant_configs: dict[str, Path],
    default_variants: Sequence[str],
    out: Path,
    title: str,
    align: Align | None = None,
    extra_columns: Sequence[str] = (),
    extra_bars: Sequence[tuple[str, str]] = (),
) -> list[dict]:
    """Parse ``argv``, train the chosen variants, write and print the report; return its rows.

    Args:
        argv: the comparison's options (``--variants``, ``--out``) and CLI overrides.
        script: the experiment's entry script (it runs ``fit`` through :func:`cli_main`).
        base_config: the experiment's defaults, read first by every variant.
        variant_configs: variant name -> the YAML stacked on ``base_config``.
        default_variants: trained when ``--variants`` is not given.
        out: default results folder.
        title: heading of ``results.md``.
        align: ``(first model, model)`` -> copies weights where parameter shapes differ.
        extra_columns: summary keys shown after ``mem_over_start_mib`` in the table.
        extra_bars: ``(summary key, label)`` pairs plotted in ``resources.png`` too.
    """
    prog = f"python {os.path.relpath(script)}"
    parser = build_parser(prog, list(variant_configs), default_variants, out)
    args, overrides = parser.parse_known_args(argv)
    if overrides and not overrides[0].startswith(OVERRIDE_PREFIXES):
        parser.error(
            f"unrecognized argument {overrides[0]!r}: expected one of the options above or a "
            f"LightningCLI override starting with {OVERRIDE_PREFIXES}"
        )
    out_dir = args.out.resolve()
    variants = list(dict.fromkeys(args.variants))
    configs = {v: [base_config, variant_configs[v]] for v in variants}

    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    diffs = init_output_differences(configs, overrides, align)
    rows = []
    for variant in variants:
        print(f"\n=== training {variant} ===", flush=True)
        own = worker_overrides(out_dir, variant)
        subprocess.run(fit_command(script, configs[variant], [*overrides, *own]), check=True)
        summary = json.loads((out_dir / variant / "summary.json").read_text())
        rows.append({"variant": variant, **summary, "max_abs_diff_init": diffs[variant]})

    columns = (*COLUMNS[:4], *extra_columns, *COLUMNS[4:])
    write_csv(rows, out_dir / "results.csv", columns)
    table = markdown_table(rows, columns)
    run = " ".join([prog, *(argv or [])]).strip()
    (out_dir / "results.md").write_text(f"# {title}\n\n`{run}`\n\n{table}\n")
    plot_curves(rows, out_dir / "curves.png")
    plot_resources(rows, out_dir / "resources.png", (*RESOURCE_BARS, *extra_bars))
    print("\n" + table)
    print(f"results in {out_dir}; whole run {time.perf_counter() - start:.1f} s")
    return rows

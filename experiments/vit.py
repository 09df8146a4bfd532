"""A small Vision Transformer on ``unfoldconv.layers.PatchEmbed``: three stems side by side.

Run from the repository root::

    python experiments/vit.py                        # default comparison: patch, overlap, conv
    python experiments/vit.py --variants patch conv --trainer.max_epochs=1 --out results/x
    python experiments/vit.py fit --config configs/vit/overlap.yaml [--trainer.* ...]
    python experiments/vit.py fit --config configs/vit/video.yaml    # 3x8x32x32, tubelets 2x4x4
    python experiments/vit.py fit --config configs/vit/cifar100.yaml # the real CIFAR-100
    python experiments/vit.py mae [--trainer.* ...]  # MAE pre-training + reconstruction figure
    python experiments/vit.py fit --config configs/vit/base.yaml --print_config

Every run goes through one LightningCLI whose defaults are ``configs/vit/base.yaml`` (the
network is :func:`training.vit_net.build_vit`, the data
:class:`training.vit_data.PatternsDataModule`). With a subcommand (``fit``, ``validate``,
``test``, ``predict``) the script is that CLI; ``mae`` is ``fit --config configs/vit/mae.yaml``
(:class:`training.lit_mae.LitMAE`; the figure input / masked / reconstruction goes to
``results/vit/mae/logs/reconstruction.png``); otherwise it runs the default comparison
(:mod:`training.compare`): each stem NAME trained with
``fit --config configs/vit/base.yaml --config configs/vit/NAME.yaml`` in its own process, same
seed and data order, and a table with the stem's forward + backward time
(:class:`training.stem_timing.StemTiming`) written with the plots to ``results/vit``.

Lightning's habits: a progress bar (``--trainer.enable_progress_bar=false`` turns it off), a
CSVLogger (``metrics.csv`` beside the config as run), ``accelerator: auto`` (a GPU when there
is one). For several devices add Lightning's options, e.g.
``--trainer.strategy=ddp --trainer.devices=2`` (on CPU too: two processes); ``mae`` leaves the
classifier head unused, so there use ``--trainer.strategy=ddp_find_unused_parameters_true``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from training.cli import (
    CONFIGS,
    HELP_FLAGS,
    SUBCOMMANDS,
    cli_main,
    config_listing,
    print_entry_help,
)
from training.compare import build_parser, compare_main

VIT_CONFIGS = CONFIGS / "vit"
BASE_CONFIG = VIT_CONFIGS / "base.yaml"
MAE_CONFIG = VIT_CONFIGS / "mae.yaml"
VARIANTS = ("patch", "overlap", "conv")
OUT = Path("results/vit")

DESCRIPTION = """\
A small Vision Transformer whose stem is unfoldconv.layers.PatchEmbed.

With no subcommand: the default comparison. It trains the stems patch (non-overlapping
PatchEmbed), overlap (overlapping PatchEmbed) and conv (the Conv twin) side by side, each in its
own process, same seed and data order, on synthetic 3x32x32 patterns generated locally (no
download), on the CPU (accelerator: auto takes a GPU if there is one): about a minute on 2 quiet
CPU cores, several times that on a loaded machine. Table and plots go to results/vit/ (--out)."""

EPILOG = f"""\
subcommands (the LightningCLI; python experiments/vit.py SUBCOMMAND --help lists its options):
  fit, validate, test, predict   e.g. fit --config configs/vit/overlap.yaml [--trainer.* ...]
  mae                            MAE pre-training: fit --config configs/vit/mae.yaml; the
                                 reconstruction figure goes to results/vit/mae/logs/

configs/vit/ (base.yaml is read first by every run):
  {config_listing(VIT_CONFIGS)}
e.g. python experiments/vit.py fit --config configs/vit/video.yaml   # 3x8x32x32, tubelets"""


@torch.no_grad()
def align(reference, model) -> None:
    """Give the overlapping stem the reference's weights with its patch kernel in the middle of
    the larger one (zeros around it): with ``padding = (kernel - patch) / 2`` it then computes
    the non-overlapping embedding exactly, so the init-time output difference measures the
    arithmetic. Every other parameter is copied as it is."""
    weights = reference.state_dict()
    own = model.state_dict()
    name = "net.stem.proj.weight"
    patch, kernel = weights[name], own[name]
    margins = [(k - p) // 2 for p, k in zip(patch.shape[2:], kernel.shape[2:])]
    centre = tuple(slice(m, m + p) for m, p in zip(margins, patch.shape[2:]))
    padded = torch.zeros_like(kernel)
    padded[(slice(None), slice(None), *centre)] = patch
    model.load_state_dict({**weights, name: padded})


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the LightningCLI or the comparison."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in SUBCOMMANDS:
        cli_main(argv, default_config=BASE_CONFIG)  # None: the CLI reads sys.argv itself
    elif args and args[0] == "mae":
        cli_main(["fit", f"--config={MAE_CONFIG}", *args[1:]], default_config=BASE_CONFIG)
    elif any(arg in HELP_FLAGS for arg in args):
        parser = build_parser(f"python {Path(__file__).name}", VARIANTS, VARIANTS, OUT)
        print_entry_help(parser, DESCRIPTION, EPILOG, VIT_CONFIGS)
    else:
        compare_main(
            args,
            script=Path(__file__).resolve(),
            base_config=BASE_CONFIG,
            variant_configs={name: VIT_CONFIGS / f"{name}.yaml" for name in VARIANTS},
            default_variants=VARIANTS,
            out=OUT,
            title="ViT stems: PatchEmbed (non-overlapping, overlapping) vs the Conv twin "
            "(synthetic 3x32x32 patterns, patch 4)",
            align=align,
            extra_columns=("stem_fwd_bwd_ms",),
            extra_bars=(("stem_fwd_bwd_ms", "stem forward+backward (ms)"),),
        )


if __name__ == "__main__":
    main()

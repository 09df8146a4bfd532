"""All-CNN-C (DeepOBS ``cifar100_allcnnc``) with native vs ``unfoldconv`` convolutions.

Run from the repository root::

    python experiments/allcnnc.py                      # default comparison: native vs unfold
    python experiments/allcnnc.py --variants native unfold lc --trainer.max_epochs=1 --out results/x
    python experiments/allcnnc.py fit --config configs/synthetic.yaml [--trainer.* ...]
    python experiments/allcnnc.py fit --config configs/deepobs_cifar100.yaml --print_config
    python experiments/allcnnc.py fit --config configs/ddp_cpu.yaml   # DDP, 2 CPU processes

Every run goes through one LightningCLI whose defaults are ``configs/synthetic.yaml``. With a
subcommand (``fit``, ``validate``, ``test``, ``predict``) the script is that CLI; otherwise it
runs the default comparison (:mod:`training.compare`), which trains each variant NAME with
``fit --config configs/synthetic.yaml --config configs/NAME.yaml`` in its own process.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.allcnnc_net import copy_weights
from training.cli import (
    CONFIGS,
    HELP_FLAGS,
    SUBCOMMANDS,
    cli_main,
    config_listing,
    print_entry_help,
)
from training.compare import build_parser, compare_main

BASE_CONFIG = CONFIGS / "synthetic.yaml"
VARIANTS = ("native", "unfold", "lc")
DEFAULT_VARIANTS = ("native", "unfold")
OUT = Path("results/allcnnc")

DESCRIPTION = """\
All-CNN-C (DeepOBS cifar100_allcnnc) with native vs unfoldconv convolutions.

With no subcommand: the default comparison. It trains native (torch.nn.Conv2d) and unfold
(unfoldconv.layers.Conv2d) side by side, each in its own process, same seed and data order, for
3 epochs on a small synthetic CIFAR-100-shaped set generated locally (no download), on the CPU
(accelerator: auto takes a GPU if there is one): a few minutes on 2 quiet CPU cores, several
times that on a loaded machine. Table and plots go to results/allcnnc/ (--out); for a quick
look: --trainer.max_epochs=1."""

EPILOG = f"""\
subcommands (the LightningCLI; python experiments/allcnnc.py fit --help lists its options):
  fit, validate, test, predict   e.g. fit --config configs/synthetic.yaml [--trainer.* ...]

configs/ (synthetic.yaml is read first by every run; native/unfold/lc.yaml are the variants):
  {config_listing(CONFIGS)}
real CIFAR-100: fit --config configs/deepobs_cifar100.yaml (downloaded and checked on first use);
the ViT configs in configs/vit/ belong to experiments/vit.py."""


def align(reference, model) -> None:
    """Give ``lc``'s locally connected layer the reference's conv weights (its own init draws
    other numbers), so that the init-time output difference measures the arithmetic."""
    copy_weights(reference.net, model.net)


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the LightningCLI or the comparison."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in SUBCOMMANDS:
        cli_main(argv, default_config=BASE_CONFIG)  # None: the CLI reads sys.argv itself
    elif any(arg in HELP_FLAGS for arg in args):
        parser = build_parser(f"python {Path(__file__).name}", VARIANTS, DEFAULT_VARIANTS, OUT)
        print_entry_help(parser, DESCRIPTION, EPILOG, CONFIGS)
    else:
        compare_main(
            args,
            script=Path(__file__).resolve(),
            base_config=BASE_CONFIG,
            variant_configs={name: CONFIGS / f"{name}.yaml" for name in VARIANTS},
            default_variants=DEFAULT_VARIANTS,
            out=OUT,
            title="All-CNN-C: native vs unfoldconv (synthetic CIFAR-100-shaped data)",
            align=align,
        )


if __name__ == "__main__":
    main()

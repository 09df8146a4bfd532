"""All-CNN-C (DeepOBS ``cifar100_allcnnc``) with native vs ``unfoldconv`` convolutions.

Run from the repository root::

    python experiments/allcnnc.py                      # offline default comparison
    python experiments/allcnnc.py --variants native unfold lc --epochs 3 --out results/x
    python experiments/allcnnc.py fit --config configs/synthetic.yaml [--trainer.* ...]
    python experiments/allcnnc.py fit --config configs/deepobs_cifar100.yaml --print_config
    python experiments/allcnnc.py fit --config configs/ddp_cpu.yaml   # DDP, 2 CPU processes

With no arguments (or options of its own) the script runs the comparison of
:mod:`experiments.compare`; with a Lightning subcommand (``fit``, ``validate``, ``test``,
``predict``) it hands over to the LightningCLI of :mod:`experiments.cli`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run as a script: make the ``experiments`` package importable
    sys.path.insert(0, str(_ROOT))


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the LightningCLI or the comparison."""
    from experiments.cli import SUBCOMMANDS

    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in SUBCOMMANDS:
        from experiments.cli import cli_main

        cli_main(argv)  # None: LightningCLI reads sys.argv itself
    else:
        from experiments.compare import main as compare_main

        compare_main(args)


if __name__ == "__main__":
    main()

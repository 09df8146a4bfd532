"""The LightningCLI of the experiments: ``python experiments/allcnnc.py fit --config ...``.

Model and data are chosen by ``class_path`` (``--model`` / ``--data``, e.g.
``--data SyntheticCIFAR100DataModule`` or ``--data CIFAR100DataModule``); when no
``--config`` is given, ``configs/synthetic.yaml`` supplies the defaults.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI

from experiments.data import CIFAR100DataModule, SyntheticCIFAR100DataModule  # noqa: F401
from experiments.lit_classifier import LitClassifier

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and with ``run``, execute) the CLI on ``args`` (``sys.argv[1:]`` if ``None``)."""
    defaults = {"default_config_files": [str(DEFAULT_CONFIG)]}
    return LightningCLI(
        LitClassifier,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={name: defaults for name in SUBCOMMANDS} if run else defaults,
    )

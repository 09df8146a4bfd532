"""The LightningCLI every experiment runs through (``fit``, ``validate``, ``test``, ``predict``).

Model and data are any ``LightningModule`` / ``LightningDataModule`` named by ``class_path``
(``--model`` / ``--data``, e.g. ``--data training.data.CIFAR100DataModule``). An experiment's
base config (``default_config``) supplies every default; ``--config`` files stack on it, and
``--trainer.*`` / ``--model.*`` / ``--data.*`` override single values.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI

SUBCOMMANDS = ("fit", "validate", "test", "predict")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def cli_main(
    args: list[str] | None = None, default_config: Path | None = None, run: bool = True
) -> LightningCLI:
    """Build (and with ``run``, execute) the CLI on ``args`` (``sys.argv[1:]`` if ``None``).

    Args:
        args: command-line arguments; with ``run``, a subcommand first (``fit ...``).
        default_config: YAML read before any ``--config`` (the experiment's defaults).
        run: execute the subcommand; ``False`` only parses and instantiates (no subcommand).
    """
    defaults = {"default_config_files": [str(default_config)] if default_config else []}
    return LightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={name: defaults for name in SUBCOMMANDS} if run else defaults,
    )

"""The LightningCLI every experiment runs through (``fit``, ``validate``, ``test``, ``predict``).

Model and data are any ``LightningModule`` / ``LightningDataModule`` named by ``class_path``
(``--model`` / ``--data``, e.g. ``--data training.data.CIFAR100DataModule``). An experiment's
base config (``default_config``) supplies every default; ``--config`` files stack on it, and
``--trainer.*`` / ``--model.*`` / ``--data.*`` override single values.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI

SUBCOMMANDS = ("fit", "validate", "test", "predict")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HELP_FLAGS = ("-h", "--help")


class EntryHelpFormatter(
    argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter
):
    """The entry scripts' ``--help``: description and epilog as written, defaults shown."""


def print_entry_help(
    parser: argparse.ArgumentParser, description: str, epilog: str, variant_folder: Path
) -> None:
    """Print the default comparison's ``parser`` help with an entry script's own texts.

    Args:
        parser: the comparison's parser (:func:`training.compare.build_parser`).
        description: what the script does with no subcommand (data, device, duration).
        epilog: its subcommands and config folders.
        variant_folder: where ``--variants NAME`` reads ``NAME.yaml``.
    """
    parser.formatter_class = EntryHelpFormatter
    parser.description, parser.epilog = description, epilog
    folder = variant_folder.relative_to(CONFIGS.parent).as_posix()
    for action in parser._actions:
        if action.dest == "variants":
            action.help = (
                f"variants to train, in this order (variant NAME reads {folder}/NAME.yaml)"
            )
    parser.print_help()


def config_listing(folder: Path) -> str:
    """``"base.yaml, conv.yaml, ..."``: the YAML files of a config folder, for ``--help``."""
    return ", ".join(path.name for path in sorted(folder.glob("*.yaml")))


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
    with warnings.catch_warnings():
        # an entry script that rewrites its command line (``vit.py mae`` -> ``fit --config
        # mae.yaml``) passes args *and* has sys.argv: what Lightning warns about is meant here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
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

"""A callback that writes the MAE figure (input / masked / reconstruction) when ``fit`` ends.

Used by ``configs/vit/mae.yaml``: the first validation batch, through
:func:`training.lit_mae.save_reconstruction_figure`, to ``path`` (default:
``reconstruction.png`` in the logger's folder, next to ``metrics.csv``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from training.lit_mae import LitMAE, save_reconstruction_figure
from training.stem_timing import first_val_batch


class ReconstructionFigure(pl.Callback):
    """Save the MAE reconstruction figure of the first validation batch at the end of ``fit``.

    Args:
        path: the PNG to write; default ``<trainer.log_dir>/reconstruction.png``.
        num_images: rows of the figure.
        seed: of the masks shown.
    """

    def __init__(self, path: str | None = None, num_images: int = 4, seed: int = 0) -> None:
        self.path = path
        self.num_images = num_images
        self.seed = seed
        self.written: Path | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, LitMAE):
            raise TypeError(
                f"ReconstructionFigure needs a training.lit_mae.LitMAE model, got "
                f"{type(pl_module).__name__}"
            )
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        folder = log_dir if log_dir is not None else trainer.default_root_dir
        path = Path(self.path) if self.path else Path(folder) / "reconstruction.png"
        input = first_val_batch(trainer, pl_module.device)
        self.written = save_reconstruction_figure(
            pl_module, input, path, self.num_images, self.seed
        )
        print(f"MAE reconstruction figure: {self.written}")

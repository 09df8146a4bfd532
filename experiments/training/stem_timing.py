"""A callback that times the network's patch stem, forward + backward, after training.

At the end of training (before ``fit`` ends, so :class:`training.run_summary.RunSummary` picks
it up) it takes the first validation batch, as the model sees it (moved to the device and
through the data module's ``on_after_batch_transfer``), and times ``net.stem(x)`` and its
backward (a fixed random output gradient) with :class:`torch.utils.benchmark.Timer` (which
synchronises CUDA); the median over blocks of runs, in milliseconds, becomes ``stem_fwd_bwd_ms`` in
``trainer.callback_metrics``. Timed apart from the training loop, so it does not disturb the
epoch times, and on the same batch size for every stem.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils import benchmark


def first_val_batch(trainer: pl.Trainer, device: torch.device) -> torch.Tensor:
    """The first validation batch's input, on ``device``, as the model receives it."""
    data = trainer.datamodule
    loader = data.val_dataloader() if data is not None else trainer.val_dataloaders
    batch = next(iter(loader))
    batch = trainer.lightning_module.transfer_batch_to_device(batch, device, 0)
    if data is not None:
        batch = data.on_after_batch_transfer(batch, 0)
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def time_forward_backward(module: torch.nn.Module, input: torch.Tensor, min_run_time: float):
    """Median seconds of ``module(input)`` and its backward with a fixed random output gradient
    (a dense one, as a network above the module sends; ``.sum()``'s would be a stride-0
    broadcast of ones), gradients cleared afterwards."""
    with torch.no_grad():
        grad = torch.randn_like(module(input))
    timer = benchmark.Timer(
        stmt="torch.autograd.backward(module(input), grad)",
        globals={"module": module, "input": input, "grad": grad, "torch": torch},
    )
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    for parameter in module.parameters():
        parameter.grad = None
    return measurement.median


class StemTiming(pl.Callback):
    """Time ``pl_module.net.stem`` forward + backward at the end of training.

    Args:
        min_run_time: seconds of timed runs (at least), as ``Timer.blocked_autorange``.

    Puts ``stem_fwd_bwd_ms`` (median, milliseconds) into ``trainer.callback_metrics``.
    """

    def __init__(self, min_run_time: float = 1.0) -> None:
        self.min_run_time = min_run_time

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stem = pl_module.net.stem
        input = first_val_batch(trainer, pl_module.device)
        was_training = stem.training
        stem.train()
        seconds = time_forward_backward(stem, input, self.min_run_time)
        stem.train(was_training)
        trainer.callback_metrics["stem_fwd_bwd_ms"] = torch.tensor(1000 * seconds)

"""A callback that writes one run's summary (time per epoch, peak memory, final metrics) as JSON.

The default comparison adds it to every variant's ``fit`` on the command line::

    --trainer.callbacks+=training.run_summary.RunSummary --trainer.callbacks.path=OUT/summary.json

Time per epoch: from the epoch's start to its last training batch's end (data loading included,
the validation loop not); the summary keeps every epoch's and their median, which resists a
disturbed epoch on a shared machine. Peak memory: on CUDA ``torch.cuda.max_memory_allocated()``
(tensors only); on CPU the process's peak resident set size (``ru_maxrss``: interpreter, torch
and data included), with ``mem_over_start_mib`` how far it rose during ``fit``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory so far: CUDA tensors on a CUDA device, else this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return kib / (2**20 if sys.platform == "darwin" else 2**10)


class RunSummary(pl.Callback):
    """Write ``path`` (JSON) at the end of ``fit``.

    Args:
        path: where the summary goes; its folder is created.

    Keys: ``time_per_epoch_s`` (median), ``epoch_times_s``, ``peak_mem_mib``,
    ``mem_over_start_mib``, ``device``, ``metrics_csv`` (a CSVLogger's) and every
    scalar in ``trainer.callback_metrics`` (e.g. ``train_acc``, ``val_acc``).
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.epoch_times: list[float] = []
        self._epoch_start = 0.0
        self._start_mib = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_mib = peak_memory_mib(pl_module.device)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self.epoch_times.append(0.0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.epoch_times[-1] = time.perf_counter() - self._epoch_start

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        peak = peak_memory_mib(pl_module.device)
        logger = trainer.logger  # CSVLogger writes its metrics.csv when fit has finished
        metrics_csv = (
            Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
        )
        summary = {
            "time_per_epoch_s": statistics.median(self.epoch_times) if self.epoch_times else None,
            "epoch_times_s": self.epoch_times,
            "peak_mem_mib": peak,
            "mem_over_start_mib": peak - self._start_mib,
            "device": str(pl_module.device),
            "metrics_csv": str(metrics_csv) if metrics_csv else None,
            **{k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(summary, indent=2))

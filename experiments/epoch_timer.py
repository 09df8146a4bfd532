"""A callback that times each training epoch (training batches only, not validation)."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class EpochTimer(pl.Callback):
    """``epoch_times`` (seconds, one per epoch): from the epoch's start to its last training
    batch's end, so data loading is included and the validation loop is not."""

    def __init__(self) -> None:
        self.epoch_times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        self.epoch_times.append(0.0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epoch_times[-1] = time.perf_counter() - self._start

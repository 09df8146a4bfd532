"""The LightningModule: any image classifier trained with cross-entropy, L2 on its weights only.

The network, the optimiser and the learning-rate scheduler are arguments, so one module serves
every experiment; in YAML each is a ``class_path`` with ``init_args``::

    model:
      class_path: training.lit_classifier.LitClassifier
      init_args:
        net: {class_path: training.allcnnc_net.AllCNNC, init_args: {conv_impl: unfold}}
        optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.05, momentum: 0.9}}
        lr_scheduler:
          class_path: torch.optim.lr_scheduler.MultiStepLR
          init_args: {milestones: [200, 250, 300], gamma: 0.1}
        weight_decay: 0.0005

Built by the LightningCLI, ``hparams.yaml`` is that configuration: the optimiser and scheduler
recorded are the ones that ran (there is no learning-rate argument of the module's own that
could disagree with them). ``weight_decay`` goes to the weights only, not the biases, whatever
the optimiser (for SGD, coupled weight decay is the gradient of DeepOBS's
``weight_decay / 2 * ||w||^2``); it overrides a ``weight_decay`` in the optimiser's init_args.
"""

from __future__ import annotations

import warnings
from typing import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

OptimizerCallable = Callable[..., Optimizer]
LRSchedulerCallable = Callable[[Optimizer], LRScheduler]


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with ``weight_decay``, biases (any ``*.bias``) without."""
    weights, biases = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (biases if name.endswith("bias") else weights).append(p)
    return [
        {"params": weights, "weight_decay": weight_decay},
        {"params": biases, "weight_decay": 0.0},
    ]


class LitClassifier(pl.LightningModule):
    """Train ``net`` (images -> logits) on batches ``(x, y)`` with cross-entropy.

    Args:
        net: the network; ``net(x)`` returns ``(B, num_classes)`` logits.
        optimizer: ``param_groups -> Optimizer``, e.g. ``torch.optim.Adam`` or
            ``functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)``.
        lr_scheduler: optional ``Optimizer -> LRScheduler``, stepped once per epoch.
        weight_decay: L2 factor on the weights (not biases), whatever the optimiser.

    Logs ``{train,val,test}_loss`` and ``{train,val,test}_acc``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None = None,
        weight_decay: float = 5e-4,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
        if not callable(optimizer):
            raise TypeError(f"optimizer: expected a callable, got {optimizer!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay: expected a float >= 0, got {weight_decay!r}")
        # Under LightningCLI the hparams are the run's config (net, optimizer and lr_scheduler as
        # class_path/init_args). Built in code, the net module is left out (Lightning keeps it in
        # the checkpoint) and the callables are recorded as given.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attribute 'net' is an instance of")
            self.save_hyperparameters()
        if isinstance(self.hparams.get("net"), nn.Module):
            self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        on_step = stage == "train"
        kw = {"on_epoch": True, "batch_size": len(y), "sync_dist": not on_step}
        self.log(f"{stage}_loss", loss, on_step=on_step, prog_bar=True, **kw)
        self.log(f"{stage}_acc", acc, on_step=False, prog_bar=True, **kw)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(param_groups(self.net, self.hparams.weight_decay))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}

"""The LightningModule: All-CNN-C trained with cross-entropy and DeepOBS's L2 on weights.

Default optimisation is DeepOBS's CIFAR-100 recipe: SGD (``lr`` 0.05, ``momentum`` 0.9)
with the learning rate divided by 10 (``gamma``) at epochs ``milestones`` (200, 250, 300).
Any other optimiser or scheduler can be injected through ``optimizer`` / ``lr_scheduler``
(callables taking the parameter groups / the optimiser; in YAML, a ``class_path`` with
``init_args``). Either way ``weight_decay`` is applied to the weights only, not the biases
(SGD's coupled weight decay equals the gradient of DeepOBS's ``weight_decay/2 * ||w||^2``).
"""

from __future__ import annotations

from typing import Callable, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from experiments.allcnnc_net import AllCNNC

OptimizerCallable = Callable[..., Optimizer]
LRSchedulerCallable = Callable[[Optimizer], LRScheduler]


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
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
    """All-CNN-C classifier.

    Args:
        conv_impl: ``"native"``, ``"unfold"`` or ``"lc"`` (see :class:`AllCNNC`).
        num_classes: classes of the data (100).
        lr, momentum: SGD settings, used when ``optimizer`` is ``None``.
        weight_decay: L2 factor on the weights (not biases), whatever the optimiser.
        milestones, gamma: MultiStepLR settings (epochs), used when ``lr_scheduler`` is
            ``None``; an empty ``milestones`` keeps the learning rate constant.
        optimizer: optional ``params -> Optimizer`` (e.g. ``torch.optim.Adam``).
        lr_scheduler: optional ``Optimizer -> LRScheduler``, stepped once per epoch.

    Batches are ``(x, y)`` with ``x`` ``(B, 3, 32, 32)`` and ``y`` ``(B,)``; ``forward``
    returns ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        conv_impl: Literal["native", "unfold", "lc"] = "native",
        num_classes: int = 100,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        milestones: tuple[int, ...] = (200, 250, 300),
        gamma: float = 0.1,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr: expected a positive float, got {lr!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay: expected a float >= 0, got {weight_decay!r}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.net = AllCNNC(conv_impl=conv_impl, num_classes=num_classes)
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
        hp = self.hparams
        groups = param_groups(self.net, hp.weight_decay)
        if self.optimizer_factory is None:
            optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum)
        else:
            optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(optimizer)
        elif hp.milestones:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=list(hp.milestones), gamma=hp.gamma
            )
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}

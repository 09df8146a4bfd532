"""LightningDataModules: the real CIFAR-100 (downloaded on first use) and a synthetic twin.

Both yield batches ``(x, y)``: ``x`` float32 ``(B, 3, 32, 32)``, ``y`` int64 ``(B,)`` in
``[0, 100)``. The training loader shuffles with its own generator seeded by ``seed``, so the
data order is the same for every model trained with the same seed.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from training import augment, cifar100_archive
from training.checks import check_int
from training.synthetic import make_synthetic


class _TensorDataModule(pl.LightningDataModule):
    """Shared loaders over in-memory tensors ``self.train_set`` / ``val_set`` / ``test_set``."""

    def __init__(self, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        check_int("batch_size", batch_size, 1)
        check_int("num_workers", num_workers, 0)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def _loader(self, dataset: TensorDataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for loaders")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class SyntheticCIFAR100DataModule(_TensorDataModule):
    """CIFAR-100-shaped synthetic data (see :mod:`training.synthetic`), built from ``seed``.

    Args:
        n_train / n_val / n_test: number of images per split.
        batch_size: images per batch.
        signal / noise: amplitude of the class pattern and of the pixel noise.
        seed: fixes the images and the shuffling order.
    """

    def __init__(
        self,
        n_train: int = 1024,
        n_val: int = 512,
        n_test: int = 512,
        batch_size: int = 32,
        signal: float = 8.0,
        noise: float = 2.0,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            check_int(name, value, 1)
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        kw = {"signal": hp.signal, "noise": hp.noise, "class_seed": self.seed}
        self.train_set = TensorDataset(*make_synthetic(hp.n_train, seed=3 * self.seed + 1, **kw))
        self.val_set = TensorDataset(*make_synthetic(hp.n_val, seed=3 * self.seed + 2, **kw))
        self.test_set = TensorDataset(*make_synthetic(hp.n_test, seed=3 * self.seed + 3, **kw))


class CIFAR100DataModule(_TensorDataModule):
    """The real CIFAR-100, read from the official python archive with DeepOBS's recipe.

    ``prepare_data`` downloads ``url`` to ``data_dir`` on first use, checks its ``md5``
    and extracts it. ``val_size`` training images (a seeded random subset) form the
    validation split; the official test set is the test split. Training batches get
    :func:`training.augment.deepobs_augment` (when ``augment``); all batches are
    normalised per channel. Both run on the batch's device, after transfer.
    """

    def __init__(
        self,
        data_dir: str = "data/cifar100",
        batch_size: int = 256,
        val_size: int = 5000,
        augment: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        url: str = cifar100_archive.CIFAR100_URL,
        md5: str = cifar100_archive.CIFAR100_MD5,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        check_int("val_size", val_size, 0)
        self.data_dir = Path(data_dir)
        self.val_size = val_size
        self.augment = augment
        self.url = url
        self.md5 = md5
        self.save_hyperparameters()

    def prepare_data(self) -> None:
        cifar100_archive.prepare(self.data_dir, self.url, self.md5)

    def setup(self, stage: str | None = None) -> None:
        folder = cifar100_archive.prepare(self.data_dir, self.url, self.md5)
        x, y = cifar100_archive.read_split(folder, "train")
        if self.val_size >= len(y):
            raise ValueError(
                f"val_size: expected fewer than the {len(y)} training images, got {self.val_size}"
            )
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        val, train = perm[: self.val_size], perm[self.val_size :]
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(*cifar100_archive.read_split(folder, "test"))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 ``(B, 3, 32, 32)`` -> augmented (training only), normalised float32."""
        x, y = batch
        x = x.float() / 255.0
        trainer = self.trainer  # None outside a Trainer
        if self.augment and trainer is not None and trainer.training:
            x = augment.deepobs_augment(x)
        return augment.normalize(x), y

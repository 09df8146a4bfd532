"""Synthetic patch-pattern images and videos for ViTs, generated offline from a seed.

Class ``c`` is a template built from three parts, each drawn once from ``class_seed``:

- a sinusoidal grating with its own wave vector ``k_c`` (orientation, 1.5 to 4 cycles per image)
  and colour ``b_c``;
- a bright 8x8 square of colour ``e_c`` in a class-specific cell of the 4x4 grid of 8x8 cells.

The template is then shifted to zero mean per channel, so the mean colour of a sample says
nothing about its class: the class is in where and what the patterns are.
Videos (``frames`` given) move the grating and the square with a class-specific velocity
``v_c`` (up to 1 pixel per frame; wrap-around), so the class is also in the motion. Each sample
is its class template shifted (circularly) by a random offset of up to ``max_shift`` pixels
per spatial axis, times ``signal``, plus ``noise`` times i.i.d. standard normal noise::

    x = signal * roll(template_c, shift) + noise * eps

so no single pixel gives the class away, and a ViT with 4x4 patches (whose tokens see the
square's edges and the grating's local frequency) learns it within a few CPU epochs.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

IMAGE_SHAPE = (3, 32, 32)
VIDEO_SHAPE = (3, 8, 32, 32)
KINDS = ("image", "video")
CELL = 8  # side of the class square and of the cells it sits in


def check_positive_int(name: str, value) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")


def class_templates(
    num_classes: int, frames: int | None = None, size: int = 32, class_seed: int = 0
) -> torch.Tensor:
    """Noise-free class templates ``(num_classes, 3, size, size)``, or ``(num_classes, 3,
    frames, size, size)`` for videos."""
    g = torch.Generator().manual_seed(class_seed)
    angle = torch.rand(num_classes, generator=g) * math.pi
    cycles = 1.5 + 2.5 * torch.rand(num_classes, generator=g)
    wave = torch.stack([angle.cos(), angle.sin()], 1) * (cycles * 2 * math.pi / size)[:, None]
    grating_colour = torch.randn(num_classes, 3, generator=g)
    square_colour = 1.5 * torch.randn(num_classes, 3, generator=g)
    cells = size // CELL
    cell = torch.randperm(cells * cells, generator=g).repeat(num_classes)[:num_classes]
    velocity = 2 * torch.rand(num_classes, 2, generator=g) - 1  # pixels per frame
    time = torch.arange(frames if frames else 1, dtype=torch.float32)
    rows = torch.arange(size, dtype=torch.float32)
    # positions relative to the moving pattern, (classes, T, size) per axis
    row = rows - velocity[:, 0, None, None] * time[:, None]
    col = rows - velocity[:, 1, None, None] * time[:, None]
    phase = wave[:, 0, None, None, None] * row[:, :, :, None]
    phase = phase + wave[:, 1, None, None, None] * col[:, :, None, :]  # (classes, T, H, W)
    top, left = (cell // cells) * CELL, (cell % cells) * CELL
    in_rows = ((row - top[:, None, None]) % size) < CELL  # (classes, T, H)
    in_cols = ((col - left[:, None, None]) % size) < CELL  # (classes, T, W)
    square = (in_rows[:, :, :, None] & in_cols[:, :, None, :]).float()  # (classes, T, H, W)
    template = (
        grating_colour[:, :, None, None, None] * torch.cos(phase)[:, None]
        + square_colour[:, :, None, None, None] * square[:, None]
    )  # (classes, 3, T, H, W)
    # zero mean per class and channel: the image's mean colour says nothing about the class
    template = template - template.mean(dim=(2, 3, 4), keepdim=True)
    return template if frames else template[:, :, 0]


def roll_per_sample(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Circular shift of the last two axes of ``images`` ``(n, ..., H, W)`` by ``shifts``
    ``(n, 2)`` (a different shift per sample), as ``torch.roll`` does for one."""
    n, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    flat = images.reshape(n, -1, height, width)  # (n, M, H, W), M = channels (x frames)
    rows = (torch.arange(height) - shifts[:, :1]) % height  # (n, H)
    cols = (torch.arange(width) - shifts[:, 1:]) % width  # (n, W)
    sample = torch.arange(n)[:, None, None, None]
    middle = torch.arange(flat.shape[1])[None, :, None, None]
    rolled = flat[sample, middle, rows[:, None, :, None], cols[:, None, None, :]]
    return rolled.reshape(images.shape)


def make_patterns(
    n: int,
    num_classes: int = 10,
    frames: int | None = None,
    *,
    signal: float = 1.0,
    noise: float = 3.0,
    max_shift: int = 4,
    seed: int = 0,
    class_seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` samples with balanced labels in a random order.

    Returns ``(x, y)``: ``x`` float32 ``(n, 3, 32, 32)`` (or ``(n, 3, frames, 32, 32)``),
    ``y`` int64 ``(n,)``. ``class_seed`` fixes what the classes look like (share it between the
    training and validation sets); ``seed`` fixes the labels' order, the shifts and the noise.

    Example:
        >>> x, y = make_patterns(4, num_classes=2, frames=8)
        >>> x.shape, y.tolist()
        (torch.Size([4, 3, 8, 32, 32]), [0, 1, 1, 0])
    """
    check_positive_int("n", n)
    check_positive_int("num_classes", num_classes)
    if frames is not None:
        check_positive_int("frames", frames)
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got noise={noise!r}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0, got max_shift={max_shift!r}")
    templates = class_templates(num_classes, frames, IMAGE_SHAPE[-1], class_seed)
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
    clean = roll_per_sample(templates[y], shifts)
    x = signal * clean + noise * torch.randn(clean.shape, generator=g)
    return x.float(), y


class PatternsDataModule(pl.LightningDataModule):
    """Train / validation sets of :func:`make_patterns`, generated in ``setup``.

    Args:
        kind: ``"image"`` (``3x32x32``) or ``"video"`` (``3x8x32x32``).
        num_classes: classes (default 10).
        train_size, val_size: samples per set.
        batch_size: of both loaders.
        num_workers: DataLoader workers (0: load in the main process).
        signal, noise, max_shift: as :func:`make_patterns`.
        seed: fixes the classes (shared by both sets), each set's samples and the order of the
            training batches.

    Batches are ``(x, y)``: ``x`` ``(B, *shape)``, ``y`` ``(B,)``.
    """

    def __init__(
        self,
        kind: str = "image",
        num_classes: int = 10,
        train_size: int = 2048,
        val_size: int = 512,
        batch_size: int = 64,
        num_workers: int = 0,
        signal: float = 1.0,
        noise: float = 3.0,
        max_shift: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got kind={kind!r}")
        for name in ("train_size", "val_size", "batch_size"):
            check_positive_int(name, locals()[name])
        self.save_hyperparameters()
        self.shape = IMAGE_SHAPE if kind == "image" else VIDEO_SHAPE
        self.num_classes = num_classes
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        options = dict(
            num_classes=hp.num_classes,
            frames=self.shape[1] if hp.kind == "video" else None,
            signal=hp.signal,
            noise=hp.noise,
            max_shift=hp.max_shift,
            class_seed=hp.seed,
        )
        self.train_set = TensorDataset(*make_patterns(hp.train_size, seed=hp.seed + 1, **options))
        self.val_set = TensorDataset(*make_patterns(hp.val_size, seed=hp.seed + 2, **options))

    def train_dataloader(self) -> DataLoader:
        order = torch.Generator().manual_seed(self.hparams.seed)
        return self._loader(self.train_set, shuffle=True, generator=order)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def _loader(self, dataset: TensorDataset, **kwargs) -> DataLoader:
        hp = self.hparams
        workers = {"num_workers": hp.num_workers, "persistent_workers": hp.num_workers > 0}
        return DataLoader(dataset, batch_size=hp.batch_size, **workers, **kwargs)

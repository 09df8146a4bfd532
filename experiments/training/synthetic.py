"""A CIFAR-100-shaped synthetic classification set, generated locally from a seed.

Class ``c`` has a colour ``a_c`` (3 values) and a sinusoidal grating with its own wave vector
``k_c`` (orientation, 2-6 cycles per image) and colour ``b_c``. An image of class ``c`` is::

    x[ch, i, j] = signal * (a_c[ch] + b_c[ch] * cos(k_c . (i, j) + phi)) + noise * eps

with a random phase ``phi`` per image (so the class cannot be read from single pixels) and
i.i.d. standard normal ``eps``. Colour and orientation survive All-CNN-C's global mean, so
its accuracy climbs well above chance (1%) within a couple of CPU epochs.
"""

from __future__ import annotations

import math

import torch

from training.checks import check_int

IMAGE_SHAPE = (3, 32, 32)


def class_parameters(num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    """Per-class ``colour`` ``(C, 3)``, grating ``wave`` ``(C, 2)`` (radians per pixel) and
    ``grating_colour`` ``(C, 3)``."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(num_classes, generator=g) * math.pi
    cycles = 2.0 + 4.0 * torch.rand(num_classes, generator=g)  # cycles per 32 pixels
    wave = torch.stack([angle.cos(), angle.sin()], dim=1) * (cycles * 2 * math.pi / 32)[:, None]
    return {
        "colour": torch.randn(num_classes, 3, generator=g),
        "wave": wave,
        "grating_colour": torch.randn(num_classes, 3, generator=g),
    }


def make_synthetic(
    n: int,
    num_classes: int = 100,
    *,
    signal: float = 8.0,
    noise: float = 2.0,
    seed: int = 0,
    class_seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` images with balanced labels.

    Returns ``(x, y)``: ``x`` float32 ``(n, 3, 32, 32)``, ``y`` int64 ``(n,)`` in
    ``[0, num_classes)``. ``class_seed`` fixes what the classes look like (share it between
    training and validation sets); ``seed`` fixes the labels' order, phases and noise.
    """
    check_int("n", n, 1)
    check_int("num_classes", num_classes, 1)
    if not noise >= 0:
        raise ValueError(f"noise: expected a non-negative float, got {noise!r}")
    p = class_parameters(num_classes, class_seed)
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    wave = p["wave"][y]  # (n, 2)
    grating = torch.cos(wave[:, 0, None, None] * rows + wave[:, 1, None, None] * cols + phase)
    clean = (
        p["colour"][y][:, :, None, None]
        + p["grating_colour"][y][:, :, None, None] * grating[:, None]
    )
    x = signal * clean + noise * torch.randn(n, *IMAGE_SHAPE, generator=g)
    return x.float(), y

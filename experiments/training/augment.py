"""DeepOBS's CIFAR augmentation and per-channel normalisation, written with torch ops.

All functions work on a batch ``x`` of shape ``(N, 3, H, W)`` (float, values in ``[0, 1]``
unless said otherwise) on any device, and draw their randomness from ``generator`` (or the
global RNG when it is ``None``), one draw per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Per-channel statistics of the CIFAR-100 training images (values in [0, 1]).
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
# Luma weights (ITU-R 601) for the grey image that saturation blends with.
_LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, x: torch.Tensor, generator) -> torch.Tensor:
    """``(n, 1, 1, 1)`` draws from ``U(low, high)`` on ``x``'s device and dtype."""
    u = torch.rand(n, 1, 1, 1, generator=generator, device=generator.device if generator else None)
    return (low + (high - low) * u).to(device=x.device, dtype=x.dtype)


def random_crop(x: torch.Tensor, pad: int = 2, generator=None) -> torch.Tensor:
    """Zero-pad by ``pad`` on every side, then crop a random ``H x W`` window per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dev = generator.device if generator is not None else None
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev).to(x.device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (n, 1, h, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (n, 1, 1, w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_hflip(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = _uniform(x.shape[0], 0.0, 1.0, x, generator) < 0.5
    return torch.where(flip, x.flip(-1), x)


def adjust_brightness(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Add ``delta`` (broadcast, e.g. ``(N, 1, 1, 1)``) to every pixel, clamp to [0, 1]."""
    return (x + delta).clamp(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the grey image: ``grey + factor * (x - grey)``, clamp to [0, 1]."""
    luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype)[None, :, None, None]
    grey = (x * luma).sum(dim=1, keepdim=True)
    return (grey + factor * (x - grey)).clamp(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale about each image's per-channel mean (as ``tf.image.adjust_contrast``), clamp."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (mean + factor * (x - mean)).clamp(0.0, 1.0)


def deepobs_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """DeepOBS training augmentation: pad 2 + random 32x32 crop, horizontal flip, brightness
    ``+- 63/255``, saturation ``x [0.5, 1.5]``, contrast ``x [0.2, 1.8]``.

    ``x``: ``(N, 3, 32, 32)`` floats in ``[0, 1]``; returns the same shape.
    """
    n = x.shape[0]
    x = random_crop(x, pad=2, generator=generator)
    x = random_hflip(x, generator=generator)
    x = adjust_brightness(x, _uniform(n, -63 / 255, 63 / 255, x, generator))
    x = adjust_saturation(x, _uniform(n, 0.5, 1.5, x, generator))
    return adjust_contrast(x, _uniform(n, 0.2, 1.8, x, generator))


def normalize(x: torch.Tensor, mean=CIFAR100_MEAN, std=CIFAR100_STD) -> torch.Tensor:
    """``(x - mean[c]) / std[c]`` per channel; ``x`` is ``(N, 3, H, W)``."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype)[None, :, None, None]
    s = torch.tensor(std, device=x.device, dtype=x.dtype)[None, :, None, None]
    return (x - m) / s

"""DeepOBS's ``cifar100_allcnnc`` network with a choice of convolution implementation.

Layers (``N`` images of ``3 x 32 x 32`` in, ``N x num_classes`` logits out)::

    dropout 0.2
    conv 3x3  3 -> 96,   pad 1          -> 96 x 32 x 32
    conv 3x3 96 -> 96,   pad 1          -> 96 x 32 x 32
    conv 3x3 96 -> 96,   stride 2, TF same (pad 0 before, 1 after)  -> 96 x 16 x 16
    dropout 0.5
    conv 3x3 96 -> 192,  pad 1          -> 192 x 16 x 16
    conv 3x3 192 -> 192, pad 1          -> 192 x 16 x 16
    conv 3x3 192 -> 192, stride 2, TF same                          -> 192 x 8 x 8
    dropout 0.5
    conv 3x3 192 -> 192, valid          -> 192 x 6 x 6
    conv 1x1 192 -> 192                 -> 192 x 6 x 6
    conv 1x1 192 -> num_classes         -> num_classes x 6 x 6
    (ReLU after every conv), mean over the 6 x 6 positions -> num_classes

Weights are Xavier-normal, biases 0.1 (DeepOBS). The L2 penalty (5e-4, weights only) lives in
the optimiser set-up of :mod:`experiments.lit_classifier`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CONV_IMPLS = ("native", "unfold", "lc")


def conv_classes(conv_impl: str) -> tuple[type[nn.Module], type[nn.Module]]:
    """Return ``(Conv2d class, class of the 3x3 valid layer)`` for ``conv_impl``.

    ``native`` uses ``torch.nn.Conv2d`` everywhere; ``unfold`` uses
    ``unfoldconv.layers.Conv2d`` everywhere; ``lc`` is ``unfold`` except that the 3x3 valid
    layer is ``unfoldconv.layers.LocallyConnected2d``.
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl: expected one of {CONV_IMPLS}, got {conv_impl!r}")
    if conv_impl == "native":
        return nn.Conv2d, nn.Conv2d
    from unfoldconv.layers import Conv2d, LocallyConnected2d  # imported lazily: optional

    return Conv2d, (LocallyConnected2d if conv_impl == "lc" else Conv2d)


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _xavier_normal_lc_(weight: torch.Tensor) -> None:
    """Xavier-normal init of a locally connected weight ``(*out_spatial, out, in, kh, kw)``.

    The fans are those of the equivalent convolution (per output position), so the scale
    matches the conv layer it replaces.
    """
    out_c, in_c, kh, kw = weight.shape[-4:]
    std = math.sqrt(2.0 / ((in_c + out_c) * kh * kw))
    with torch.no_grad():
        weight.normal_(0.0, std)


class AllCNNC(nn.Module):
    """All-CNN-C (Springenberg et al. 2015) as in DeepOBS's ``cifar100_allcnnc``.

    Args:
        conv_impl: ``"native"``, ``"unfold"`` or ``"lc"`` (see :func:`conv_classes`).
        num_classes: number of output classes (100 for CIFAR-100).

    Shapes: ``forward(x)`` takes ``x`` of shape ``(N, 3, 32, 32)`` and returns logits of
    shape ``(N, num_classes)``.
    """

    def __init__(self, conv_impl: str = "native", num_classes: int = 100) -> None:
        super().__init__()
        _check_positive("num_classes", num_classes)
        conv, valid_conv = conv_classes(conv_impl)
        self.conv_impl = conv_impl

        def block(c_in: int, c_out: int, k: int, *, stride: int = 1, padding: int = 0):
            return [conv(c_in, c_out, k, stride=stride, padding=padding), nn.ReLU()]

        # TF "same" for a 3x3/stride-2 conv on an even size: 0 rows/cols before, 1 after.
        def tf_same_stride2(c_in: int, c_out: int):
            return [nn.ZeroPad2d((0, 1, 0, 1)), *block(c_in, c_out, 3, stride=2)]

        # LocallyConnected2d also takes its input size: 8x8 in, 6x6 out.
        size = ((8, 8),) if conv_impl == "lc" else ()
        valid = valid_conv(192, 192, *size, 3)
        self.layers = nn.Sequential(
            nn.Dropout(0.2),
            *block(3, 96, 3, padding=1),
            *block(96, 96, 3, padding=1),
            *tf_same_stride2(96, 96),
            nn.Dropout(0.5),
            *block(96, 192, 3, padding=1),
            *block(192, 192, 3, padding=1),
            *tf_same_stride2(192, 192),
            nn.Dropout(0.5),
            valid,
            nn.ReLU(),
            *block(192, 192, 1),
            *block(192, num_classes, 1),
        )
        self.reset_parameters()

    def weight_layers(self) -> list[nn.Module]:
        """The nine weight layers, input to output."""
        return [m for m in self.layers if hasattr(m, "weight")]

    def reset_parameters(self) -> None:
        """DeepOBS init: Xavier-normal weights, biases 0.1, layer by layer from the input."""
        for layer in self.weight_layers():
            if layer.weight.dim() == 4:
                nn.init.xavier_normal_(layer.weight)
            else:
                _xavier_normal_lc_(layer.weight)
            nn.init.constant_(layer.bias, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 32, 32)`` images -> ``(N, num_classes)`` logits."""
        return self.layers(x).mean(dim=(2, 3))

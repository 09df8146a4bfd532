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
the optimiser set-up of :mod:`training.lit_classifier`. :func:`conv_layer_shapes` reads the
conv layers' shapes off this one definition (the benchmark measures them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from training.checks import check_int

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
        check_int("num_classes", num_classes, 1)
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


@torch.no_grad()
def copy_weights(src: AllCNNC, dst: AllCNNC) -> None:
    """Copy ``src``'s weights into ``dst``; a locally connected layer of ``dst`` gets the conv's
    kernel and bias at every output position."""
    for a, b in zip(src.weight_layers(), dst.weight_layers()):
        if b.weight.dim() == a.weight.dim():
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
        else:  # LC weight (*out_spatial, out, in, kh, kw), bias (out, *out_spatial)
            b.weight.copy_(a.weight.expand_as(b.weight))
            b.bias.copy_(a.bias.view(-1, 1, 1).expand_as(b.bias))


@dataclass(frozen=True)
class ConvShape:
    """One conv layer of the network as it runs: ``name`` (``conv1`` .. ``conv9``), channels,
    square ``kernel_size`` / ``stride`` / ``padding``, and the spatial ``input_size`` it sees
    (after any explicit ``ZeroPad2d``)."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    input_size: int


def conv_layer_shapes(image_size: int = 32) -> list[ConvShape]:
    """The nine conv layers of :class:`AllCNNC` (native), input to output, traced on the meta
    device with forward hooks, so the shapes come from the definition above and nothing else.

    Example:
        >>> [(s.name, s.in_channels, s.input_size, s.stride) for s in conv_layer_shapes()[1:3]]
        [('conv2', 96, 32, 1), ('conv3', 96, 33, 2)]
    """
    net = AllCNNC("native").to("meta")
    seen: list[ConvShape] = []

    def record(layer: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append(
            ConvShape(
                f"conv{len(seen) + 1}",
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size[0],
                layer.stride[0],
                layer.padding[0],
                inputs[0].shape[-1],
            )
        )

    for layer in net.weight_layers():
        layer.register_forward_hook(record)
    net(torch.empty(1, 3, image_size, image_size, device="meta"))
    return seen

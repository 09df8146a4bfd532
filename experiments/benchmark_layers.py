"""Benchmark cases for the layers: every layer against its torch twin and the usual snippet.

Registered in ``experiments/benchmark.py`` (``all_cases``); run e.g.::

    python experiments/benchmark.py --only Conv2d,LocallyConnected2d,PatchEmbed,ConvTranspose2d

Implementations per case:

- ``unfoldconv``: our layer (:mod:`unfoldconv.layers`).
- ``torch``: its torch twin with the same parameters (``nn.Conv2d``, ``nn.ConvTranspose2d``;
  for ``PatchEmbed`` an ``nn.Conv2d`` / ``nn.Conv3d`` with kernel = stride = patch, flattened).
- ``F.unfold+matmul`` (``F.unfold+einsum`` for LocallyConnected2d): the usual hand-written
  layer, ``F.unfold(x) -> weight.view(C_out, -1) @ columns -> view``.
- ``route=unfold`` (ConvTranspose2d): our other engine route, unfold_transpose + matmul.

Forward and forward+backward; backward reaches the input and every parameter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import unfoldconv
from experiments.benchmark_core import Case, Factory
from unfoldconv import layers

# (name, in_channels, out_channels, spatial size, kernel, stride, padding): All-CNN-C convs
ALLCNNC_LAYERS = [
    ("conv1", 3, 96, 32, 3, 1, 1),
    ("conv2", 96, 96, 32, 3, 1, 1),
    ("conv3", 96, 96, 32, 3, 2, 1),
    ("conv4", 96, 192, 16, 3, 1, 1),
    ("conv6", 192, 192, 16, 3, 2, 1),
    ("conv7", 192, 192, 8, 3, 1, 0),
    ("conv8", 192, 192, 6, 1, 1, 0),
]


def call_factory(
    op: Callable[[torch.Tensor], torch.Tensor], make_input: Callable[[], torch.Tensor]
) -> Factory:
    """Thunks for ``op``: forward alone, or forward + backward into input and parameters."""

    def factory(mode: str):
        if mode == "forward":
            x = make_input()

            def forward():
                with torch.no_grad():
                    return op(x)

            return forward
        x = make_input().requires_grad_(True)
        grad = torch.randn_like(op(x))

        def forward_backward():
            x.grad = None
            op(x).backward(grad)

        return forward_backward

    return factory


def _module_factory(module: nn.Module, make_input: Callable[[], torch.Tensor]) -> Factory:
    def op(x):
        for parameter in module.parameters():
            parameter.grad = None
        return module(x)

    return call_factory(op, make_input)


def conv2d_case(name, batch, c_in, c_out, size, kernel, stride, padding, device) -> Case:
    torch.manual_seed(0)
    native = nn.Conv2d(c_in, c_out, kernel, stride, padding, device=device)
    ours = layers.Conv2d.from_native(native)
    out_size = (size + 2 * padding - kernel) // stride + 1

    def unfold_matmul(x):
        columns = F.unfold(x, kernel, padding=padding, stride=stride)  # (N, C*K, L)
        output = native.weight.view(c_out, -1) @ columns + native.bias.view(1, -1, 1)
        return output.view(x.shape[0], c_out, out_size, out_size)  # (N, C_out, L) -> NCHW

    def make_input():
        return torch.randn(batch, c_in, size, size, device=device)

    label = f"{name} b{batch} {c_in}->{c_out} {size}x{size} k{kernel} s{stride} p{padding}"
    return Case(
        "Conv2d",
        label,
        "unfoldconv",
        {
            "unfoldconv": _module_factory(ours, make_input),
            "torch": _module_factory(native, make_input),
            "F.unfold+matmul": _module_factory(_Wrapped(native, unfold_matmul), make_input),
        },
    )


class _Wrapped(nn.Module):
    """A snippet as a module over ``owner``'s parameters (so their gradients get cleared)."""

    def __init__(self, owner: nn.Module, op: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.owner = owner
        self.op = op

    def forward(self, x):
        return self.op(x)


def locally_connected_case(name, batch, c_in, c_out, size, kernel, device) -> Case:
    torch.manual_seed(0)
    ours = layers.LocallyConnected2d(c_in, c_out, size, kernel, device=device)
    out_size = size - kernel + 1
    num_blocks = out_size * out_size
    # the snippet's own layout: weight (C_out, C*K, L), bias (C_out, L)
    snippet = nn.Module()
    snippet.weight = nn.Parameter(torch.randn(c_out, c_in * kernel * kernel, num_blocks))
    snippet.bias = nn.Parameter(torch.randn(c_out, num_blocks))

    def unfold_einsum(x):
        columns = F.unfold(x, kernel)  # (N, C*K, L)
        output = torch.einsum("nkl,okl->nol", columns, snippet.weight) + snippet.bias
        return output.view(x.shape[0], c_out, out_size, out_size)

    def make_input():
        return torch.randn(batch, c_in, size, size, device=device)

    label = f"{name} b{batch} {c_in}->{c_out} {size}x{size} k{kernel}"
    return Case(
        "LocallyConnected2d",
        label,
        "unfoldconv",
        {
            "unfoldconv": _module_factory(ours, make_input),
            "F.unfold+einsum": _module_factory(_Wrapped(snippet, unfold_einsum), make_input),
        },
    )


def conv_transpose2d_case(name, batch, c_in, c_out, size, kernel, stride, padding, device):
    torch.manual_seed(0)
    native = nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, device=device)
    ours = layers.ConvTranspose2d.from_native(native)

    def unfold_route(x):
        return unfoldconv.conv_transpose(
            x, native.weight, native.bias, stride, padding, route="unfold"
        )

    def make_input():
        return torch.randn(batch, c_in, size, size, device=device)

    label = f"{name} b{batch} {c_in}->{c_out} {size}x{size} k{kernel} s{stride} p{padding}"
    return Case(
        "ConvTranspose2d",
        label,
        "unfoldconv",
        {
            "unfoldconv": _module_factory(ours, make_input),
            "torch": _module_factory(native, make_input),
            "route=unfold": _module_factory(_Wrapped(native, unfold_route), make_input),
        },
    )


def patch_embed_case(name, batch, spatial, patch, embed_dim, device) -> Case:
    torch.manual_seed(0)
    d = len(spatial)
    ours = layers.PatchEmbed(patch, 3, embed_dim, device=device)
    native = (nn.Conv2d if d == 2 else nn.Conv3d)(3, embed_dim, patch, stride=patch, device=device)
    native.load_state_dict(ours.proj.state_dict())

    def conv_tokens(x):
        return native(x).flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)

    def make_input():
        return torch.randn(batch, 3, *spatial, device=device)

    label = f"{name} b{batch} 3x{'x'.join(map(str, spatial))} p{'x'.join(map(str, patch))}"
    return Case(
        "PatchEmbed",
        label,
        "unfoldconv",
        {
            "unfoldconv": _module_factory(ours, make_input),
            f"torch Conv{d}d": _module_factory(_Wrapped(native, conv_tokens), make_input),
        },
    )


def layer_cases(
    device: torch.device, quick: bool, batches: tuple[int, ...] = (32, 256)
) -> list[Case]:
    """Every layer case; ``quick``: tiny shapes only (a smoke run); Conv2d at ``batches``."""
    if quick:
        return [
            conv2d_case("conv7", 2, 8, 8, 6, 3, 1, 0, device),
            conv2d_case("conv3", 2, 4, 8, 8, 3, 2, 1, device),
            conv2d_case("conv8", 2, 8, 8, 4, 1, 1, 0, device),
            locally_connected_case("conv7", 2, 8, 8, 6, 3, device),
            conv_transpose2d_case("up", 2, 8, 4, 4, 4, 2, 1, device),
            patch_embed_case("vit", 2, (32, 32), (16, 16), 16, device),
            patch_embed_case("tubelet", 1, (4, 32, 32), (2, 16, 16), 16, device),
        ]
    cases = [
        conv2d_case(name, batch, c_in, c_out, size, kernel, stride, padding, device)
        for batch in batches
        for name, c_in, c_out, size, kernel, stride, padding in ALLCNNC_LAYERS
    ]
    cases.append(locally_connected_case("conv7", 32, 192, 192, 8, 3, device))
    cases.append(conv_transpose2d_case("up2x", 32, 192, 96, 8, 4, 2, 1, device))
    cases.append(conv_transpose2d_case("same", 32, 96, 96, 16, 3, 1, 1, device))
    cases.append(patch_embed_case("ViT-B/16", 32, (224, 224), (16, 16), 768, device))
    cases.append(patch_embed_case("tubelets", 8, (16, 224, 224), (2, 16, 16), 768, device))
    return cases

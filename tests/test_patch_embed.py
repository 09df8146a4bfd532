"""PatchEmbed vs its conv twin, timm-named state dicts; patchify / unpatchify."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import unfoldconv
from tests.helpers import params
from unfoldconv.layers import PatchEmbed

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# (id, spatial, kwargs)
CASES = [
    ("1d", (32,), {"patch_size": (8,)}),
    ("2d-vit", (32, 48), {"patch_size": 16}),
    ("2d-overlap", (20, 20), {"patch_size": 8, "stride": 4}),
    ("2d-padding", (20, 20), {"patch_size": 8, "padding": 2}),
    ("2d-remainder", (35, 33), {"patch_size": 16}),
    ("3d-tubelet", (4, 32, 32), {"patch_size": (2, 16, 16)}),
    ("3d-overlap", (6, 8, 8), {"patch_size": 4, "stride": (2, 4, 4)}),
]


@pytest.mark.parametrize(("spatial", "kwargs"), params(CASES))
@pytest.mark.parametrize("flatten", [True, False])
def test_matches_conv_twin(spatial, kwargs, flatten):
    d = len(spatial)
    layer = PatchEmbed(in_channels=3, embed_dim=8, flatten=flatten, dtype=torch.float64, **kwargs)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    weight = layer.proj.weight.detach().clone().requires_grad_(True)
    out = layer(x)
    expected = TORCH_CONV[d](
        x_ref, weight, layer.proj.bias, stride=layer.stride, padding=layer.padding
    )  # (N, E, *grid)
    if flatten:
        expected = expected.flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)
    assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert_close(x.grad, x_ref.grad)
    assert_close(layer.proj.weight.grad, weight.grad)


def test_timm_state_dict_names_and_norm():
    layer = PatchEmbed(16, 3, 32, norm_layer=nn.LayerNorm, img_size=64)
    shapes = {name: tuple(t.shape) for name, t in layer.state_dict().items()}
    assert shapes == {
        "proj.weight": (32, 3, 16, 16),
        "proj.bias": (32,),
        "norm.weight": (32,),
        "norm.bias": (32,),
    }
    assert layer.grid_size == (4, 4)
    assert layer.num_patches == 16
    # a timm-style checkpoint (these names and shapes) loads, and is used
    checkpoint = {name: torch.randn(shape) for name, shape in shapes.items()}
    layer.load_state_dict(checkpoint)
    x = torch.randn(2, 3, 64, 64)
    tokens = F.conv2d(x, checkpoint["proj.weight"], checkpoint["proj.bias"], stride=16)
    expected = F.layer_norm(
        tokens.flatten(2).transpose(1, 2), (32,), checkpoint["norm.weight"], checkpoint["norm.bias"]
    )
    # float32, 768-term sums computed by a GEMM vs torch's conv
    assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)
    assert isinstance(PatchEmbed(4, 3, 8).norm, nn.Identity)


def test_dims_and_attributes():
    assert PatchEmbed(4, 3, 8, dim=3).patch_size == (4, 4, 4)
    assert PatchEmbed(4, 3, 8).patch_size == (4, 4)  # all-int: d = 2, as timm
    assert PatchEmbed((2, 4, 4), 3, 8, img_size=(4, 8, 8)).num_patches == 8
    assert PatchEmbed(4, 3, 8).grid_size is None


@pytest.mark.parametrize(
    ("shape", "patch_size"),
    [((2, 3, 32), (4,)), ((2, 3, 8, 12), 4), ((3, 8, 12), (2, 4)), ((1, 2, 4, 6, 8), (2, 3, 4))],
    ids=["1d", "2d", "2d-unbatched", "3d"],
)
def test_patchify_unpatchify_invert(shape, patch_size):
    x = torch.randn(shape)
    d = len(patch_size) if isinstance(patch_size, tuple) else len(shape) - 2
    patches = unfoldconv.patchify(x, patch_size)
    assert torch.equal(unfoldconv.unpatchify(patches, patch_size, shape[-d:]), x)
    batched = x if len(shape) == d + 2 else x.unsqueeze(0)
    kernel = patch_size if isinstance(patch_size, tuple) else (patch_size,) * d
    # tokens are the columns of a non-overlapping unfold: (N, C*K, L) -> (N, L, C*K)
    columns = unfoldconv.unfold(batched, kernel, stride=kernel).transpose(1, 2)
    assert torch.equal(patches if len(shape) == d + 2 else patches.unsqueeze(0), columns)


BAD = [
    (
        "img-size",
        lambda: PatchEmbed(16, 3, 8, img_size=64)(torch.randn(1, 3, 32, 64)),
        r"img_size=\(64, 64\), got input of shape \(1, 3, 32, 64\)",
    ),
    (
        "channels",
        lambda: PatchEmbed(16, 3, 8)(torch.randn(1, 4, 32, 32)),
        r"input must have 3 channels .*got input with 4 channels",
    ),
    ("dim-zero", lambda: PatchEmbed(4, 3, 5, dim=0), r"dim must be positive, got dim=0"),
    (
        "dims",
        lambda: PatchEmbed(16, 3, 8)(torch.randn(3, 32, 32)),
        r"input must be batched .*got input of shape \(3, 32, 32\)",
    ),
    ("patch-size", lambda: PatchEmbed(0, 3, 8), r"patch_size must be positive, got patch_size=0"),
    (
        "dim-mismatch",
        lambda: PatchEmbed((2, 2), 3, 8, dim=3),
        r"size arguments of length 2 do not match dim=3 \(patch_size=\(2, 2\)",
    ),
    (
        "patchify-divisible",
        lambda: unfoldconv.patchify(torch.randn(1, 3, 10, 10), 4),
        r"input spatial size \(10, 10\) must be divisible by patch_size=\(4, 4\)",
    ),
    (
        "unpatchify-shape",
        lambda: unfoldconv.unpatchify(torch.randn(1, 5, 48), 4, (8, 8)),
        r"patches must be \(N, L=4, C \* 16\) .*got patches of shape \(1, 5, 48\)",
    ),
]


@pytest.mark.parametrize(("call", "match"), params(BAD))
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(("spatial", "kwargs"), params(CASES))
def test_hooks_on_proj_see_every_call(spatial, kwargs):
    """proj runs on every route (patches, overlapping, padded): its hooks fire, with its output."""
    layer = PatchEmbed(in_channels=3, embed_dim=8, flatten=False, **kwargs)
    seen = []
    layer.proj.register_forward_hook(lambda module, args, output: seen.append(output))
    out = layer(torch.randn(2, 3, *spatial))
    assert len(seen) == 1
    assert seen[0] is out

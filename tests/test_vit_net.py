"""The ViT of experiments/training/vit_net.py: shapes for d = 1, 2, 3 and every stem, the
stems against each other with shared weights, pooling, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from training.vit_net import STEMS, ConvStem, VisionTransformer, build_vit, make_stem

# (id, img_size, patch_size): d = 1, 2 (image), 3 (video tubelets)
SHAPES = [
    ("1d", (32,), (4,)),
    ("2d-image", (32, 32), (4, 4)),
    ("3d-tubelets", (8, 32, 32), (2, 4, 4)),
]


def small_vit(stem, img_size, patch_size, **kwargs):
    options = {"embed_dim": 24, "depth": 2, "num_heads": 2, "num_classes": 5}
    return build_vit(stem, img_size=img_size, patch_size=patch_size, **{**options, **kwargs})


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize(
    "img_size, patch_size", [c[1:] for c in SHAPES], ids=[c[0] for c in SHAPES]
)
def test_shapes_every_stem(stem, img_size, patch_size):
    vit = small_vit(stem, img_size, patch_size)
    grid = tuple(n // p for n, p in zip(img_size, patch_size))
    assert vit.grid_size == vit.stem.grid_size == grid  # overlap keeps the grid too
    x = torch.randn(3, 3, *img_size)
    assert vit.stem(x).shape == (3, vit.pos_embed.shape[1], 24)
    assert vit.pos_embed.shape == (1, torch.Size(grid).numel(), 24)
    logits = vit(x)
    assert logits.shape == (3, 5)
    logits.sum().backward()
    assert all(p.grad is not None for p in vit.parameters())


def shared_weight_vits(img_size, patch_size):
    """The three stems in one ViT body, float64: patch and conv share ``proj`` as it is; the
    overlapping stem gets it zero-padded to its larger kernel (its padding then lines the
    kernel's centre up with the non-overlapping patch), so all three compute the same map."""
    torch.manual_seed(0)
    vits = {stem: small_vit(stem, img_size, patch_size).double() for stem in STEMS}
    reference = vits["patch"].state_dict()
    for stem, vit in vits.items():
        state = dict(reference)
        margin = vit.stem.padding
        if stem == "overlap":
            pad = [m for m in reversed(margin) for _ in range(2)]  # F.pad order: last dim first
            state["stem.proj.weight"] = F.pad(reference["stem.proj.weight"], pad)
        vit.load_state_dict(state)
    return vits


@pytest.mark.parametrize(
    "img_size, patch_size", [c[1:] for c in SHAPES], ids=[c[0] for c in SHAPES]
)
def test_stems_agree_with_shared_weights(img_size, patch_size):
    """Same weights, same input: the same tokens, logits and input gradients for all three
    stems (float64; the stems sum the same products in different orders: 1e-10)."""
    vits = shared_weight_vits(img_size, patch_size)
    x = torch.randn(2, 3, *img_size, dtype=torch.float64)
    outputs, grads = {}, {}
    for stem, vit in vits.items():
        x_stem = x.clone().requires_grad_(True)
        outputs[stem] = vit(x_stem)
        outputs[stem].pow(2).sum().backward()
        grads[stem] = (x_stem.grad, vit.stem.proj.weight.grad)
    for stem in ("overlap", "conv"):
        assert_close(outputs[stem], outputs["patch"], rtol=0, atol=1e-10)
        assert_close(grads[stem][0], grads["patch"][0], rtol=0, atol=1e-10)
    assert_close(grads["conv"][1], grads["patch"][1], rtol=0, atol=1e-10)


def test_overlapping_stem_matches_its_conv_twin():
    """Overlapping PatchEmbed (kernel 8, stride 4, padding 2) == nn.Conv2d with its weights."""
    torch.manual_seed(0)
    stem = make_stem("overlap", (32, 32), 4, embed_dim=16).double()
    twin = ConvStem(8, 3, 16, img_size=(32, 32), stride=4, padding=2).double()
    twin.load_state_dict(stem.state_dict())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert stem.stride == (4, 4) and stem.padding == (2, 2) and stem.grid_size == (8, 8)
    assert_close(stem(x), twin(x))


def test_class_token_and_mean_pooling():
    """cls: the head reads token 0 (the class token); mean: the mean of the patch tokens and
    no class token. Checked by recomputing the forward from the parts."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    cls_vit = small_vit("patch", (32, 32), 4, pool="cls").eval()
    mean_vit = small_vit("patch", (32, 32), 4, pool="mean").eval()
    assert cls_vit.cls_token.shape == (1, 1, 24) and cls_vit.num_prefix_tokens == 1
    assert mean_vit.cls_token is None and mean_vit.num_prefix_tokens == 0
    encoded = cls_vit.encode(cls_vit.embed(x))
    assert encoded.shape == (2, 1 + 64, 24)
    assert_close(cls_vit(x), cls_vit.head(encoded[:, 0]))
    encoded = mean_vit.encode(mean_vit.embed(x))
    assert encoded.shape == (2, 64, 24)
    assert_close(mean_vit(x), mean_vit.head(encoded.mean(dim=1)))
    before = cls_vit(x)
    with torch.no_grad():
        cls_vit.cls_token.add_(torch.randn(1, 1, 24))  # (a constant would be normed away)
    assert (cls_vit(x) - before).abs().max() > 1e-3  # the class token is read out


def test_stem_is_passed_in():
    stem = make_stem("conv", (16, 16), 4, embed_dim=12)
    vit = VisionTransformer(stem, num_classes=3, depth=1, num_heads=3)
    assert vit.stem is stem and vit.pos_embed.shape == (1, 16, 12)  # embed_dim from stem.proj
    assert vit(torch.randn(1, 3, 16, 16)).shape == (1, 3)


# (id, call, error type, message parts)
ERROR_CASES = [
    ("stem-kind", lambda: make_stem("linear", (32, 32), 4), ValueError, ["kind", "'linear'"]),
    ("pool", lambda: build_vit(pool="max", depth=1), ValueError, ["pool", "'max'", "mean"]),
    (
        "heads",
        lambda: build_vit(embed_dim=10, num_heads=3, depth=1),
        ValueError,
        ["num_heads=3", "embed_dim=10"],
    ),
    (
        "no-grid",
        lambda: VisionTransformer(torch.nn.Linear(2, 2), 3),
        ValueError,
        ["grid_size", "Linear"],
    ),
    (
        "conv-4d",
        lambda: ConvStem(2, 3, 8, img_size=(4, 4, 4, 4)),
        ValueError,
        ["1 to 3", "img_size"],
    ),
    (
        "patch-size",
        lambda: make_stem("conv", (32, 32), (4, 0)),
        ValueError,
        ["patch_size", r"\(4, 0\)"],
    ),
    ("overlap", lambda: make_stem("overlap", (32, 32), 4, overlap=0), ValueError, ["overlap=0"]),
]


@pytest.mark.parametrize(
    "call, error, parts", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors(call, error, parts):
    with pytest.raises(error) as info:
        call()
    for part in parts:
        assert info.match(part)


def test_wrong_input_size_names_the_shape():
    vit = small_vit("conv", (32, 32), 4)
    with pytest.raises(ValueError, match=r"36 tokens.*\(1, 3, 24, 24\).*grid_size=\(8, 8\)"):
        vit(torch.randn(1, 3, 24, 24))

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
from unfoldconv.resample import resample_patch_embed

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


def _assert_same_values_and_gradients(out, expected, leaves, reference_leaves):
    """``out == expected``, then one random output gradient gives the same leaf gradients."""
    assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    for leaf, reference in zip(leaves, reference_leaves, strict=True):
        assert_close(leaf.grad, reference.grad)


@pytest.mark.parametrize(("spatial", "kwargs"), params(CASES))
@pytest.mark.parametrize("flatten", [True, False])
def test_matches_conv_twin(spatial, kwargs, flatten):
    d = len(spatial)
    layer = PatchEmbed(in_channels=3, embed_dim=8, flatten=flatten, dtype=torch.float64, **kwargs)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    weight = layer.proj.weight.detach().clone().requires_grad_(True)
    bias = layer.proj.bias.detach().clone().requires_grad_(True)
    out = layer(x)
    expected = TORCH_CONV[d](
        x_ref, weight, bias, stride=layer.stride, padding=layer.padding
    )  # (N, E, *grid)
    if flatten:
        expected = expected.flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)
    _assert_same_values_and_gradients(
        out, expected, (x, layer.proj.weight, layer.proj.bias), (x_ref, weight, bias)
    )


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


# --- timm's PatchEmbed, restated: its keywords, output formats, sizes, padding, resampling ---


def twin_grid(layer, x, weight=None):
    """The reference: torch's conv with ``layer``'s parameters (or ``weight``), kernel =
    ``patch_size``, on the input zero-padded at the end as timm's ``dynamic_img_pad``
    documents; ``(N, E, *grid)``."""
    d = x.dim() - 2
    if layer.dynamic_img_pad:  # timm: pad_i = (p_i - size_i % p_i) % p_i, at the end
        ends = [(-size) % p for size, p in zip(x.shape[2:], layer.patch_size)]
        x = F.pad(x, [a for end in reversed(ends) for a in (0, end)])
    weight = layer.proj.weight if weight is None else weight
    return TORCH_CONV[d](x, weight, layer.proj.bias, stride=layer.stride, padding=layer.padding)


def patches_grid(layer, x, weight):
    """Non-overlapping patches of any d, written out: cut the input into blocks and take each
    block's dot product with each filter; ``(N, E, *grid)``."""
    n, c, *spatial = x.shape
    patch = layer.patch_size
    grid = [size // p for size, p in zip(spatial, patch)]
    blocks = x.reshape(n, c, *[s for pair in zip(grid, patch) for s in pair])
    d = len(patch)
    # (N, C, g_0, k_0, ..., g_{d-1}, k_{d-1}) -> (N, *grid, C, *patch) -> (N, *grid, C*K)
    order = (0, *range(2, 2 + 2 * d, 2), 1, *range(3, 3 + 2 * d, 2))
    tokens = blocks.permute(order).reshape(n, *grid, -1)
    output = tokens @ weight.flatten(1).T + layer.proj.bias  # (N, *grid, E)
    return output.movedim(-1, 1)  # (N, *grid, E) -> (N, E, *grid)


# timm's VisionTransformer options that reach its stem: (id, dynamic_img_size, pre_norm,
# dynamic_img_pad, input spatial size)
VIT_OPTIONS = [
    ("default", False, False, False, (32, 32)),
    ("dynamic-size-pre-norm", True, True, False, (24, 40)),
    ("dynamic-size-pad", True, False, True, (36, 40)),
    ("pad-only", False, False, True, (32, 32)),
]


@pytest.mark.parametrize(
    ("dynamic_img_size", "pre_norm", "dynamic_img_pad", "size"), params(VIT_OPTIONS)
)
def test_timm_vision_transformer_call(dynamic_img_size, pre_norm, dynamic_img_pad, size):
    """timm's ``VisionTransformer.__init__`` builds its stem as (timm/models/
    vision_transformer.py)::

        embed_args = {}
        if dynamic_img_size:
            embed_args.update(dict(strict_img_size=False, output_fmt='NHWC'))
        if embed_norm_layer is not None:
            embed_args['norm_layer'] = embed_norm_layer
        self.patch_embed = embed_layer(img_size=img_size, patch_size=patch_size,
            in_chans=in_chans, embed_dim=embed_dim, bias=not pre_norm,
            dynamic_img_pad=dynamic_img_pad, **embed_args, **dd)   # dd: device, dtype

    then reads ``num_patches``, ``feat_ratio()``; ``_pos_embed`` (dynamic size) takes the NHWC
    output's ``H, W`` and ``grid_size``; ``forward_intermediates`` calls
    ``dynamic_feat_size((H, W))``; ``set_input_size`` reads ``grid_size`` / ``num_patches``."""
    dd = {"device": None, "dtype": torch.float64}
    embed_args = {}
    if dynamic_img_size:
        embed_args.update(dict(strict_img_size=False, output_fmt="NHWC"))
    embed_args["norm_layer"] = nn.LayerNorm  # embed_norm_layer given
    layer = PatchEmbed(
        img_size=32,
        patch_size=8,
        in_chans=3,
        embed_dim=16,
        bias=not pre_norm,
        dynamic_img_pad=dynamic_img_pad,
        **embed_args,
        **dd,
    )
    assert (layer.grid_size, layer.num_patches, layer.feat_ratio()) == ((4, 4), 16, 8)
    assert (layer.proj.bias is None) == pre_norm
    assert layer.proj.weight.dtype == layer.norm.weight.dtype == torch.float64
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    grid = twin_grid(layer, x_ref)  # (N, E, H, W)
    expected = grid.permute(0, 2, 3, 1) if dynamic_img_size else grid.flatten(2).mT
    expected = F.layer_norm(expected, (16,), layer.norm.weight, layer.norm.bias)
    out = layer(x)
    assert_close(out, expected)
    assert layer.dynamic_feat_size(size) == tuple(grid.shape[2:])
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert_close(x.grad, x_ref.grad)


# (id, dim, output_fmt, permutation of the twin's (N, E, *grid) or "flat-first"/"flat-last")
FORMATS = [
    ("1d-NCL", 1, "NCL", "flat-first"),
    ("1d-NLC", 1, "NLC", "flat-last"),
    ("1d-NCW", 1, "NCW", (0, 1, 2)),
    ("1d-NWC", 1, "NWC", (0, 2, 1)),
    ("2d-NCHW", 2, "NCHW", (0, 1, 2, 3)),
    ("2d-NHWC", 2, "NHWC", (0, 2, 3, 1)),
    ("2d-NLC", 2, "NLC", "flat-last"),
    ("2d-NCL", 2, "NCL", "flat-first"),
    ("3d-NCDHW", 3, "NCDHW", (0, 1, 2, 3, 4)),
    ("3d-NDHWC", 3, "NDHWC", (0, 2, 3, 4, 1)),
    ("3d-NTHWC", 3, "NTHWC", (0, 2, 3, 4, 1)),
    ("3d-NLC", 3, "NLC", "flat-last"),
    ("4d-NCABDE", 4, "NCABDE", (0, 1, 2, 3, 4, 5)),
    ("4d-NABDEC", 4, "NABDEC", (0, 2, 3, 4, 5, 1)),
]


@pytest.mark.parametrize(("d", "output_fmt", "layout"), params(FORMATS))
def test_output_fmt_matches_twin(d, output_fmt, layout):
    spatial = (8, 12, 4, 6)[:d]
    layer = PatchEmbed(2, 3, 5, dim=d, output_fmt=output_fmt, flatten=True, dtype=torch.float64)
    assert layer.flatten is False  # as timm: output_fmt replaces flatten
    assert layer.output_fmt == output_fmt
    x = torch.randn(2, 3, *spatial, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    weight = layer.proj.weight.detach().clone().requires_grad_(True)
    reference = twin_grid if d < 4 else patches_grid  # torch has no conv4d
    expected = reference(layer, x_ref, weight)
    if layout == "flat-first":
        expected = expected.flatten(2)
    elif layout == "flat-last":
        expected = expected.flatten(2).transpose(1, 2)
    else:
        expected = expected.permute(layout)
    out = layer(x)
    _assert_same_values_and_gradients(out, expected, (x, layer.proj.weight), (x_ref, weight))


def test_default_format_and_flatten():
    assert PatchEmbed(4).output_fmt == "NCHW"
    assert PatchEmbed((2, 4, 4)).output_fmt == "NCDHW"
    assert PatchEmbed((4,)).output_fmt == "NCW"
    layer = PatchEmbed(4, 3, 8, flatten=False)
    assert layer(torch.randn(1, 3, 8, 12)).shape == (1, 8, 2, 3)


# (id, constructor, input spatial size, expected grid): timm's documented size rules
SIZE_CASES = [
    # strict (default) with img_size: only img_size
    ("strict-exact", {"img_size": 32}, (32, 32), (4, 4)),
    # strict_img_size=False: any multiple of the patch, the grid per call
    ("dynamic-size", {"img_size": 32, "strict_img_size": False}, (16, 40), (2, 5)),
    # dynamic_img_pad: pad at the end up to a multiple, ceil(size / patch)
    ("pad", {"img_size": 32, "strict_img_size": False, "dynamic_img_pad": True}, (9, 17), (2, 3)),
    ("pad-strict-exact", {"img_size": 20, "dynamic_img_pad": True}, (20, 20), (3, 3)),
    ("pad-no-img-size", {"dynamic_img_pad": True}, (8, 1), (1, 1)),
    # no img_size: any size; a remainder is dropped (as the conv)
    ("no-img-size", {}, (13, 30), (1, 3)),
]


@pytest.mark.parametrize(("kwargs", "spatial", "grid"), params(SIZE_CASES))
def test_input_sizes(kwargs, spatial, grid):
    layer = PatchEmbed(8, 3, 4, output_fmt="NCHW", dtype=torch.float64, **kwargs)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (2, 4, *grid)
    assert_close(out, twin_grid(layer, x))
    assert layer.dynamic_feat_size(spatial) == grid
    if layer.img_size == spatial:  # grid_size is the grid forward gives (padding included)
        assert (layer.grid_size, layer.num_patches) == (grid, grid[0] * grid[1])


@pytest.mark.parametrize(
    ("patch_size", "spatial"),
    [((4,), (10,)), ((2, 4, 4), (3, 10, 9))],
    ids=["1d", "3d-tubelet"],
)
def test_dynamic_img_pad_any_d(patch_size, spatial):
    layer = PatchEmbed(patch_size, 3, 4, dynamic_img_pad=True, dtype=torch.float64)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, expected = layer(x), twin_grid(layer, x_ref).flatten(2).transpose(1, 2)
    assert_close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    assert_close(x.grad, x_ref.grad)


def test_dynamic_img_pad_overlapping():
    """Beyond timm (no stride there): the windows are padded to tile the input exactly."""
    layer = PatchEmbed(4, 3, 5, stride=3, dynamic_img_pad=True, output_fmt="NCHW")
    out = layer(torch.randn(1, 3, 9, 10))  # 9 -> 10, 10 stays: (10 - 4) % 3 == 0
    assert out.shape == (1, 5, 3, 3)
    assert layer.dynamic_feat_size((9, 10)) == (3, 3)
    x = torch.randn(1, 3, 9, 10)
    assert_close(layer(x), F.conv2d(F.pad(x, (0, 0, 0, 1)), layer.proj.weight, layer.proj.bias, 3))


def test_bias_false_and_norm():
    layer = PatchEmbed(4, 3, 6, bias=False, norm_layer=nn.LayerNorm, output_fmt="NHWC")
    assert layer.proj.bias is None
    assert set(layer.state_dict()) == {"proj.weight", "norm.weight", "norm.bias"}
    x = torch.randn(2, 3, 8, 8)
    expected = F.conv2d(x, layer.proj.weight, stride=4).permute(0, 2, 3, 1)
    # float32 48-term sums: a GEMM vs torch's conv
    assert_close(layer(x), F.layer_norm(expected, (6,)), rtol=1e-5, atol=1e-5)


def test_feat_ratio():
    assert PatchEmbed((2, 4, 8)).feat_ratio() == 8
    assert PatchEmbed((2, 4, 8)).feat_ratio(as_scalar=False) == (2, 4, 8)
    assert PatchEmbed(8, stride=4).feat_ratio() == 4  # the reduction is the stride


def test_in_chans_alias_and_positional_signature():
    assert PatchEmbed(4, in_chans=5).proj.in_channels == 5
    assert PatchEmbed(4, in_channels=5, in_chans=5).proj.in_channels == 5
    # our documented signature, positionally
    layer = PatchEmbed(4, 2, 6, 2, 1, False, nn.LayerNorm, False, 10, None, None, torch.float64)
    assert (layer.patch_size, layer.stride, layer.padding) == ((4, 4), (2, 2), (1, 1))
    assert layer.proj.bias is None and layer.proj.weight.shape == (6, 2, 4, 4)
    assert layer.img_size == (10, 10) and layer.grid_size == (5, 5) and not layer.flatten
    assert layer.norm.weight.dtype == torch.float64


def test_set_input_size_img_size():
    layer = PatchEmbed(8, 3, 4, img_size=32)
    layer.set_input_size(img_size=(16, 48))
    assert (layer.img_size, layer.grid_size, layer.num_patches) == ((16, 48), (2, 6), 12)
    assert layer(torch.randn(1, 3, 16, 48)).shape == (1, 12, 4)
    layer.set_input_size()  # nothing given: nothing changes (timm: img_size or self.img_size)
    assert layer.img_size == (16, 48)


def test_set_input_size_patch_size_keeps_proj_and_hooks():
    layer = PatchEmbed(8, 3, 4, img_size=32)
    proj, seen = layer.proj, []
    proj.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    layer.set_input_size(patch_size=4)
    assert layer.proj is proj
    assert layer.proj.weight.shape == (4, 3, 4, 4)
    assert (layer.patch_size, layer.stride, layer.grid_size, layer.num_patches) == (
        (4, 4),
        (4, 4),
        (8, 8),
        64,
    )
    x = torch.randn(2, 3, 32, 32)
    expected = F.conv2d(x, layer.proj.weight, layer.proj.bias, stride=4).flatten(2).mT
    # float32 48-term sums: a GEMM vs torch's conv
    assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert seen == [(2, 4, 8, 8)]
    overlapping = PatchEmbed(8, 3, 4, stride=4, flatten=False)
    overlapping.set_input_size(patch_size=6, img_size=32)  # keeps its stride; the grid follows
    assert (overlapping.patch_size, overlapping.stride) == ((6, 6), (4, 4))
    assert overlapping.grid_size == (7, 7) == overlapping(torch.randn(1, 3, 32, 32)).shape[2:]


@pytest.mark.parametrize(
    ("patch", "new"),
    [((4,), (6,)), ((8, 8), (4, 6)), ((2, 4, 4), (4, 8, 8))],
    ids=["1d", "2d", "3d-tubelet"],
)
def test_set_input_size_patch_size_resamples_the_weight(patch, new):
    """The new ``proj.weight`` is :func:`resample_patch_embed` of the old one (FlexiViT's
    identity for that function is in test_resample.py), the bias is kept, the stem runs at the
    new patch size as its conv twin, and gradients reach the new weight."""
    layer = PatchEmbed(patch, 3, 6, img_size=[4 * p for p in new], dtype=torch.float64)
    weight, bias = layer.proj.weight.detach().clone(), layer.proj.bias.detach().clone()
    layer.set_input_size(patch_size=new)
    assert_close(layer.proj.weight, resample_patch_embed(weight, new), rtol=0, atol=0)
    assert_close(layer.proj.bias, bias, rtol=0, atol=0)
    assert layer.proj.weight.requires_grad
    assert (layer.patch_size, layer.stride, layer.grid_size) == (new, new, (4,) * len(new))
    x = torch.randn(2, 3, *[4 * p for p in new], dtype=torch.float64)
    out = layer(x)
    expected = twin_grid(layer, x).flatten(2).mT
    assert_close(out, expected)
    out.sum().backward()
    assert layer.proj.weight.grad.shape == (6, 3, *new)


@pytest.mark.parametrize(("patch", "new"), [(4, 8), (8, 16), (8, 12), (4, 6)])
def test_resampled_stem_on_resized_image_gives_the_original_tokens(patch, new):
    """FlexiViT: a stem moved to patch ``new`` by ``set_input_size`` embeds an image resized by
    ``new / patch`` (whole image, bicubic, anti-aliased) nearly as the original stem embeds the
    original. Not exactly: the resize is of the whole image, so bicubic taps reach across patch
    edges and mix neighbouring patches into the border pixels; measured on random images the
    relative error is 0.08-0.15 (0.35-0.39 for the naive weight resize ``interpolate(w) *
    (patch / new) ** 2``), hence 0.2 and half the naive error."""
    torch.manual_seed(0)
    layer = PatchEmbed(patch, 3, 32, bias=False, dtype=torch.float64)
    x = torch.randn(8, 3, 4 * patch, 4 * patch, dtype=torch.float64)
    before = layer(x)
    old_weight = layer.proj.weight.detach().clone()
    layer.set_input_size(patch_size=new)
    resized = F.interpolate(x, size=(4 * new, 4 * new), mode="bicubic", antialias=True)
    error = (layer(resized) - before).norm() / before.norm()
    naive_weight = F.interpolate(old_weight, size=(new, new), mode="bicubic", antialias=True)
    naive = F.conv2d(resized, naive_weight * (patch / new) ** 2, stride=new).flatten(2).mT
    naive_error = (naive - before).norm() / before.norm()
    assert error < 0.2, f"relative error {error:.3f}"
    assert error < 0.5 * naive_error, f"relative error {error:.3f}, naive {naive_error:.3f}"


OPTION_BAD = [
    (
        "in-chans-conflict",
        lambda: PatchEmbed(4, 4, 8, in_chans=5),
        ValueError,
        r"in_channels=4 and in_chans=5",
    ),
    (
        "fmt-letters",
        lambda: PatchEmbed((2, 4, 4), output_fmt="NHWC"),
        ValueError,
        r"output_fmt must be .*3 distinct .*'NCDHW', 'NDHWC'.*got output_fmt='NHWC'",
    ),
    ("fmt-lower", lambda: PatchEmbed(4, output_fmt="nhwc"), ValueError, "output_fmt='nhwc'"),
    ("fmt-c-middle", lambda: PatchEmbed(4, output_fmt="NHCW"), ValueError, "output_fmt='NHCW'"),
    ("fmt-repeat", lambda: PatchEmbed(4, output_fmt="NCHH"), ValueError, "output_fmt='NCHH'"),
    ("fmt-type", lambda: PatchEmbed(4, output_fmt=2), TypeError, r"output_fmt=2 \(int\)"),
    (
        "strict-size",
        lambda: PatchEmbed(8, img_size=16)(torch.randn(1, 3, 24, 16)),
        ValueError,
        r"img_size=\(16, 16\), got input of shape \(1, 3, 24, 16\) \(strict_img_size=True\)",
    ),
    (
        "dynamic-not-multiple",
        lambda: PatchEmbed(8, img_size=16, strict_img_size=False)(torch.randn(1, 3, 20, 16)),
        ValueError,
        r"patch_size=\(8, 8\).*got input of shape \(1, 3, 20, 16\)",
    ),
    (
        "set-patch-size",
        lambda: PatchEmbed(8).set_input_size(patch_size=(4, 4, 4)),
        ValueError,
        r"patch_size must be an int or a tuple of 2 ints .*patch_size=\(4, 4, 4\)",
    ),
    (
        "strict-not-bool",
        lambda: PatchEmbed(8, strict_img_size="no"),
        TypeError,
        r"strict_img_size must be a bool, got strict_img_size='no' \(str\)",
    ),
    ("pad-not-bool", lambda: PatchEmbed(8, dynamic_img_pad=1), TypeError, r"dynamic_img_pad=1"),
    ("flatten-not-bool", lambda: PatchEmbed(8, flatten=None), TypeError, r"flatten=None"),
    (
        "feat-size",
        lambda: PatchEmbed(8).dynamic_feat_size((0, 8)),
        ValueError,
        r"img_size must be positive, got img_size=\(0, 8\)",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), params(OPTION_BAD))
def test_option_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# every forward path: patches, overlap, padding, dynamic pad, output formats, after resampling
HOOK_PATHS = [
    ("patches", lambda: PatchEmbed(4, 3, 8), (8, 8)),
    ("dynamic-pad", lambda: PatchEmbed(4, 3, 8, dynamic_img_pad=True), (7, 9)),
    ("nhwc", lambda: PatchEmbed(4, 3, 8, output_fmt="NHWC"), (8, 8)),
    ("ncl-tubelet", lambda: PatchEmbed((2, 4, 4), 3, 8, output_fmt="NCL"), (2, 8, 8)),
    ("overlap-nlc", lambda: PatchEmbed(4, 3, 8, stride=2, padding=1), (8, 8)),
]


@pytest.mark.parametrize(("make", "spatial"), params(HOOK_PATHS))
@pytest.mark.parametrize("resampled", [False, True], ids=["", "resampled"])
def test_hooks_on_proj_every_option(make, spatial, resampled):
    layer = make()
    if resampled:
        layer.set_input_size(patch_size=tuple(2 * p for p in layer.patch_size))
        spatial = tuple(2 * s for s in spatial)
    seen = []
    layer.proj.register_forward_hook(lambda module, args, output: seen.append(output))
    x = torch.randn(2, 3, *spatial)
    layer(x)
    assert len(seen) == 1
    assert seen[0].shape[:2] == (2, 8)

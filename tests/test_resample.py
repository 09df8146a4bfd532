"""resample_patch_embed: FlexiViT's identity, a 2-d reference restating timm, shapes, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from unfoldconv.resample import patch_resize_matrix, resample_patch_embed, resize_matrix

EMBED, CHANNELS = 5, 2


def interpolate_kwargs(mode: str, antialias: bool) -> dict:
    return {"antialias": antialias} if mode in ("bilinear", "bicubic") else {}


def reference_resample_2d(weight, new_size, mode, antialias):
    """timm's 2-d recipe restated from F.interpolate's documented behaviour: the resize matrix
    ``R`` ``(H'W', HW)`` has as column ``j`` the resized ``j``-th basis image (whole 2-d
    images, not per dim), and the new weight is ``w.flatten(2) @ pinv(R)``, in float64."""
    h, w = weight.shape[2:]
    basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    resized = F.interpolate(basis, size=new_size, mode=mode, **interpolate_kwargs(mode, antialias))
    matrix = resized.reshape(h * w, -1).T  # (H'W', HW)
    flat = weight.double().flatten(2) @ torch.linalg.pinv(matrix)  # (E, C, H'W')
    return flat.reshape(*weight.shape[:2], *new_size), matrix


# F.interpolate resizes images of d = 1, 2, 3 directly: (id, patch, new patch, F.interpolate
# mode, our interpolation, antialias); every new size is >= the old one in every dim
UPSAMPLE_CASES = [
    ("1d-linear", (3,), (7,), "linear", "bilinear", False),
    ("1d-nearest", (4,), (8,), "nearest", "nearest", False),
    ("2d-bicubic-aa", (4, 4), (8, 8), "bicubic", "bicubic", True),
    ("2d-bicubic", (4, 3), (6, 7), "bicubic", "bicubic", False),
    ("2d-bilinear-aa", (3, 5), (7, 5), "bilinear", "bilinear", True),
    ("2d-nearest-exact", (2, 3), (5, 6), "nearest-exact", "nearest-exact", False),
    ("2d-area", (3, 3), (6, 9), "area", "area", False),
    ("3d-trilinear", (2, 4, 4), (4, 6, 8), "trilinear", "bilinear", False),
    ("3d-nearest", (2, 2, 3), (3, 4, 6), "nearest", "nearest", False),
]


@pytest.mark.parametrize(
    "patch, new, mode, interpolation, antialias",
    [c[1:] for c in UPSAMPLE_CASES],
    ids=[c[0] for c in UPSAMPLE_CASES],
)
def test_flexivit_identity_when_upsampling(patch, new, mode, interpolation, antialias):
    """<resize(x, new), resample(w, new)> == <x, w> for random w and patches x (FlexiViT eq. 4).

    Upsampling makes the resize R injective, so pinv(R) @ R = I and the identity is exact; in
    float64 what is left is the SVD inside pinv, ~cond(R) * 1e-16 (cond(R) < 10 here): 1e-10
    is far below any real mismatch (a wrong R gives errors of order 1).
    """
    torch.manual_seed(0)
    weight = torch.randn(EMBED, CHANNELS, *patch, dtype=torch.float64)
    x = torch.randn(16, CHANNELS, *patch, dtype=torch.float64)  # 16 random patches
    big = F.interpolate(x, size=new, mode=mode, **interpolate_kwargs(mode, antialias))
    new_weight = resample_patch_embed(weight, new, interpolation, antialias)
    tokens = x.flatten(1) @ weight.flatten(1).T  # (16, E): each patch through the old weight
    big_tokens = big.flatten(1) @ new_weight.flatten(1).T
    assert_close(big_tokens, tokens, rtol=0, atol=1e-10)


def test_flexivit_identity_float32():
    """The same identity in float32 (ViT-B/16 sizes, 16 -> 32): float32 rounding in the 256-term
    dot products and in the matmul with pinv gives ~1e-5 relative error; 1e-4 leaves room."""
    torch.manual_seed(0)
    weight = torch.randn(8, 3, 16, 16)
    x = torch.randn(4, 3, 16, 16)
    big = F.interpolate(x, size=(32, 32), mode="bicubic", antialias=True)
    new_weight = resample_patch_embed(weight, 32)
    assert new_weight.dtype == torch.float32
    tokens = x.flatten(1) @ weight.flatten(1).T
    assert_close(big.flatten(1) @ new_weight.flatten(1).T, tokens, rtol=1e-4, atol=1e-4)


def test_flexivit_identity_3d_bicubic():
    """d = 3 bicubic (no F.interpolate mode): the video is resized by 2-d bicubic per frame
    (H, W), then along time as (1, T) images, both straight from F.interpolate."""
    torch.manual_seed(0)
    weight = torch.randn(EMBED, CHANNELS, 2, 4, 4, dtype=torch.float64)
    x = torch.randn(6, CHANNELS, 2, 4, 4, dtype=torch.float64)
    frames = x.transpose(1, 2).reshape(-1, CHANNELS, 4, 4)  # (N*T, C, H, W)
    frames = F.interpolate(frames, size=(8, 8), mode="bicubic", antialias=True)
    big = frames.reshape(6, 2, CHANNELS, 8, 8).permute(0, 2, 3, 4, 1)  # (N, C, H', W', T)
    big = F.interpolate(big.reshape(-1, 1, 1, 2), size=(1, 4), mode="bicubic", antialias=True)
    big = big.reshape(6, CHANNELS, 8, 8, 4).permute(0, 1, 4, 2, 3)  # (N, C, T', H', W')
    new_weight = resample_patch_embed(weight, (4, 8, 8))
    tokens = x.flatten(1) @ weight.flatten(1).T
    assert_close(big.flatten(1) @ new_weight.flatten(1).T, tokens, rtol=0, atol=1e-10)


# (id, patch, new patch, interpolation, antialias): up, down and mixed, against the reference
REFERENCE_CASES = [
    ("up-bicubic-aa", (4, 4), (8, 8), "bicubic", True),
    ("down-bicubic-aa", (8, 8), (4, 4), "bicubic", True),
    ("mixed-bicubic", (4, 6), (7, 3), "bicubic", False),
    ("down-bilinear-aa", (6, 5), (4, 3), "bilinear", True),
    ("up-nearest", (2, 3), (4, 5), "nearest", False),
    ("down-area", (6, 6), (3, 2), "area", False),
    ("one-dim-kept", (4, 4), (4, 6), "bicubic", True),
]


@pytest.mark.parametrize(
    "patch, new, interpolation, antialias",
    [c[1:] for c in REFERENCE_CASES],
    ids=[c[0] for c in REFERENCE_CASES],
)
def test_matches_2d_reference(patch, new, interpolation, antialias):
    """Per-dim pseudo-inverses (ours) == pinv of the whole 2-d resize matrix (timm's recipe).

    Both are float64 pinvs through an SVD of well-conditioned matrices: 1e-10 absolute.
    """
    torch.manual_seed(0)
    weight = torch.randn(EMBED, CHANNELS, *patch, dtype=torch.float64)
    expected, matrix = reference_resample_2d(weight, new, interpolation, antialias)
    assert_close(
        resample_patch_embed(weight, new, interpolation, antialias), expected, atol=1e-10, rtol=0
    )
    assert_close(
        patch_resize_matrix(patch, new, interpolation, antialias), matrix, atol=1e-12, rtol=0
    )


def test_downsampling_is_least_squares():
    """When R shrinks, R.T @ w_new is the least-squares best to w: the residual is orthogonal
    to R's rows (normal equations R (R.T w_new - w) = 0), checked with the reference R."""
    torch.manual_seed(0)
    weight = torch.randn(EMBED, CHANNELS, 8, 6, dtype=torch.float64)
    _, matrix = reference_resample_2d(weight, (4, 3), "bicubic", True)
    new_weight = resample_patch_embed(weight, (4, 3))
    residual = new_weight.flatten(2) @ matrix - weight.flatten(2)  # (E, C, HW): R.T w_new - w
    assert residual.abs().max() > 0.1  # information is lost: the identity cannot be exact
    assert_close(residual @ matrix.T, torch.zeros(EMBED, CHANNELS, 12, dtype=torch.float64))


# (id, weight shape, new size, expected shape)
SHAPE_CASES = [
    ("1d", (6, 3, 8), (5,), (6, 3, 5)),
    ("1d-int", (6, 3, 8), 12, (6, 3, 12)),
    ("2d", (6, 3, 16, 16), (8, 24), (6, 3, 8, 24)),
    ("3d-tubelet", (6, 3, 2, 4, 4), (4, 8, 8), (6, 3, 4, 8, 8)),
    ("3d-int", (6, 3, 2, 4, 4), 3, (6, 3, 3, 3, 3)),
    ("4d", (2, 1, 2, 2, 3, 2), (3, 2, 4, 4), (2, 1, 3, 2, 4, 4)),
]


@pytest.mark.parametrize(
    "shape, new, expected", [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shapes_and_dtype(device, shape, new, expected, dtype):
    """Shape, dtype and device; the values equal the float64 resampling of the same weight
    (checked against the 2-d reference above) rounded to the dtype, at its default tolerance."""
    weight = torch.randn(shape, device=device, dtype=dtype)
    output = resample_patch_embed(weight, new)
    assert output.shape == expected
    assert output.dtype == dtype
    assert output.device == weight.device
    exact = resample_patch_embed(weight.double(), new)
    assert_close(output, exact.to(dtype))
    if len(shape) == 4:  # d = 2: the restated timm recipe (the defaults: bicubic, antialias)
        size = (new,) * 2 if isinstance(new, int) else new
        reference, _ = reference_resample_2d(weight.cpu(), size, "bicubic", True)
        assert_close(exact.cpu(), reference)


def test_same_size_returns_the_weight():
    weight = torch.randn(4, 3, 2, 4, 4)
    assert resample_patch_embed(weight, (2, 4, 4)) is weight


def test_kept_dim_is_untouched():
    """Resizing only W: every (H, W) row is resampled on its own, H is left as it is."""
    torch.manual_seed(0)
    weight = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    pinv = torch.linalg.pinv(resize_matrix(5, 9))  # (5, 9)
    assert_close(resample_patch_embed(weight, (4, 9)), weight @ pinv)


def test_gradients():
    weight = torch.randn(2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: resample_patch_embed(w, (5, 3)), (weight,))


# (id, args, kwargs, error type, message parts)
ERROR_CASES = [
    (
        "new-size-length",
        ((4, 3, 4, 4), (8, 8, 8)),
        {},
        ValueError,
        ["new_size", r"\(8, 8, 8\)", "tuple of 2 ints"],
    ),
    (
        "new-size-zero",
        ((4, 3, 4, 4), (8, 0)),
        {},
        ValueError,
        ["new_size", r"\(8, 0\)", "positive"],
    ),
    ("new-size-negative", ((4, 3, 4), -2), {}, ValueError, ["new_size", "=-2", "positive"]),
    ("new-size-float", ((4, 3, 4, 4), (8.0, 8)), {}, TypeError, ["new_size", r"8\.0", "ints"]),
    ("new-size-str", ((4, 3, 4, 4), "8"), {}, TypeError, ["new_size", "'8'"]),
    (
        "interpolation",
        ((4, 3, 4, 4), 8),
        {"interpolation": "lanczos"},
        ValueError,
        ["interpolation", "'lanczos'", "bicubic"],
    ),
    (
        "antialias-nearest",
        ((4, 3, 4, 4), 8),
        {"interpolation": "nearest"},
        ValueError,
        ["antialias=True", "'nearest'"],
    ),
    ("weight-2d", ((4, 3), 8), {}, ValueError, ["weight", r"\(4, 3\)", "patch"]),
]


@pytest.mark.parametrize(
    "args, kwargs, error, parts", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors(args, kwargs, error, parts):
    shape, new = args
    with pytest.raises(error) as info:
        resample_patch_embed(torch.randn(shape), new, **kwargs)
    for part in parts:
        assert info.match(part)


def test_type_errors():
    with pytest.raises(TypeError, match=r"weight must be a torch.Tensor, got list"):
        resample_patch_embed([[1.0]], 2)
    with pytest.raises(TypeError, match=r"weight must be a floating-point tensor.*int64"):
        resample_patch_embed(torch.ones(2, 2, 3, dtype=torch.int64), 4)

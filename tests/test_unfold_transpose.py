"""unfold_transpose / UnfoldTranspose against unfoldNd and nn.ConvTranspose1d/2d/3d."""

from __future__ import annotations

import math

import pytest
import torch
import unfoldNd
from einops import einsum, rearrange

from tests.helpers import params
from unfoldconv import UnfoldTranspose, unfold, unfold_transpose

# (id, input shape, kwargs)
CASES = [
    ("1d-k3", (2, 3, 7), {"kernel_size": 3}),
    (
        "1d-k3-s2-p1-op1",
        (2, 3, 7),
        {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
    ),
    ("2d-k3-s2", (2, 3, 5, 4), {"kernel_size": 3, "stride": 2}),
    ("2d-k2-d2", (2, 3, 5, 4), {"kernel_size": 2, "dilation": 2}),
    ("2d-big-padding", (2, 3, 6, 6), {"kernel_size": 3, "padding": 3, "stride": 3, "dilation": 2}),
    (
        "2d-mixed",
        (1, 2, 5, 6),
        {
            "kernel_size": (2, 3),
            "stride": (2, 1),
            "padding": (1, 0),
            "output_padding": (1, 0),
            "dilation": (1, 2),
        },
    ),
    ("3d-k2-s2", (1, 2, 3, 4, 3), {"kernel_size": 2, "stride": 2}),
    (
        "3d-mixed",
        (1, 2, 4, 3, 3),
        {
            "kernel_size": (3, 2, 1),
            "stride": (1, 3, 2),
            "padding": (1, 0, 0),
            "output_padding": (0, 2, 1),
        },
    ),
]


@pytest.mark.parametrize("shape, kwargs", params(CASES))
def test_matches_unfoldNd(device, shape, kwargs):
    x = torch.randn(shape, device=device)
    torch.testing.assert_close(
        unfold_transpose(x, **kwargs), unfoldNd.unfold_transposeNd(x, **kwargs)
    )


def _conv_transpose_layer(d):
    return {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[
        d
    ]


@pytest.mark.parametrize("groups", [1, 2], ids=lambda g: f"groups{g}")
@pytest.mark.parametrize("shape, kwargs", params(CASES))
def test_einsum_matches_conv_transpose(device, shape, kwargs, groups):
    """conv_transpose(x) == einsum(w, unfold_transpose(x)), per group."""
    d = len(shape) - 2
    n, _, *spatial = shape
    in_channels, out_channels = 2 * groups, 3 * groups
    x = torch.randn(n, in_channels, *spatial, device=device, dtype=torch.float64)
    layer = _conv_transpose_layer(d)(in_channels, out_channels, groups=groups, bias=False, **kwargs)
    layer = layer.to(device=device, dtype=torch.float64)
    expected = layer(x)
    columns = unfold_transpose(x, **kwargs)  # (N, C_in * K, L_out)
    k = math.prod(layer.kernel_size)
    columns = rearrange(columns, "n (g c k) l -> n g (c k) l", g=groups, k=k)
    # weight (C_in, C_out / groups, *kernel) -> (groups, C_out / groups, C_in / groups * K)
    weight = rearrange(layer.weight, "(g i) o ... -> g o (i ...)", g=groups)
    result = einsum(weight, columns, "g o ik, n g ik l -> n g o l").reshape(expected.shape)
    torch.testing.assert_close(result, expected)


def test_4d_is_the_adjoint_of_the_4d_convolution():
    """No ConvTranspose4d exists: conv_transpose(x) = d<conv(y), x>/dy with conv = W @ unfold."""
    kwargs = {"kernel_size": 2, "stride": 2, "padding": 1, "dilation": 1}
    weight = torch.randn(
        3, 2, 2, 2, 2, 2, dtype=torch.float64
    )  # (C_in of transposed=3, C_out=2, *k)
    x = torch.randn(2, 3, 3, 2, 3, 2, dtype=torch.float64)
    output_size = (4, 2, 4, 2)  # (3-1)*2 - 2 + 1 + 1 = 4; (2-1)*2 - 2 + 2 = 2
    y = torch.zeros(2, 2, *output_size, dtype=torch.float64, requires_grad=True)
    conv = (weight.flatten(1) @ unfold(y, **kwargs)).view_as(x)  # (N, 3, *spatial)
    (expected,) = torch.autograd.grad((conv * x).sum(), y)
    columns = unfold_transpose(x, **kwargs)
    result = (weight.transpose(0, 1).flatten(1) @ columns).view(2, 2, *output_size)
    torch.testing.assert_close(result, expected)


@pytest.mark.parametrize("output_size", [(9, 9), (10, 10), (9, 10), (1, 2, 10, 9)], ids=str)
def test_module_output_size_matches_conv_transpose(output_size):
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    layer = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, bias=False).double()
    expected = layer(x, output_size=output_size)
    columns = UnfoldTranspose(3, stride=2, padding=1)(x, output_size=output_size)
    result = (layer.weight.transpose(0, 1).flatten(1) @ columns).view_as(expected)
    torch.testing.assert_close(result, expected)


def test_module_rejects_unreachable_output_size():
    with pytest.raises(ValueError, match=r"output_size=.*cannot be reached"):
        UnfoldTranspose(3, stride=2, padding=1)(torch.randn(1, 2, 5, 5), output_size=(12, 12))


def test_unbatched():
    x = torch.randn(3, 5, 4)
    expected = unfold_transpose(x.unsqueeze(0), (2, 3), stride=2).squeeze(0)
    assert torch.equal(unfold_transpose(x, (2, 3), stride=2), expected)


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.complex64, torch.int64, torch.bool], ids=str
)
def test_dtypes(dtype):
    source = torch.randn(2, 3, 4, 5) * 10
    x = source > 0 if dtype == torch.bool else source.to(dtype)
    out = unfold_transpose(x, 2, stride=2, padding=1)
    assert out.dtype == dtype
    expected = unfold_transpose(source.double(), 2, stride=2, padding=1)
    assert torch.equal(out, expected > 0 if dtype == torch.bool else expected.to(dtype))

"""Behaviour a torch user relies on beyond plain calls: autocast, unbatched output_size, NumPy
sizes, repr of string padding, and the dim check of PatchEmbed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import unfoldconv
from unfoldconv import layers

AUTOCAST_TWINS = [
    (
        "Conv2d",
        lambda: layers.Conv2d(4, 6, 3, padding=1),
        lambda: nn.Conv2d(4, 6, 3, padding=1),
        (2, 4, 8, 8),
    ),
    (
        "ConvTranspose2d",
        lambda: layers.ConvTranspose2d(4, 6, 3, stride=2),
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2),
        (2, 4, 5, 5),
    ),
    (
        "Conv1d-groups",
        lambda: layers.Conv1d(4, 6, 3, groups=2),
        lambda: nn.Conv1d(4, 6, 3, groups=2),
        (2, 4, 9),
    ),
]


@pytest.mark.parametrize(
    "make, make_native, shape", [c[1:] for c in AUTOCAST_TWINS], ids=[c[0] for c in AUTOCAST_TWINS]
)
def test_autocast_like_torch(make, make_native, shape):
    torch.manual_seed(0)
    native = make_native()
    ours = make()
    ours.load_state_dict(native.state_dict())
    x = torch.randn(shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, result = native(x), ours(x)
        from_bf16 = ours(x.bfloat16())  # an activation already in bf16 is accepted
    assert result.dtype == expected.dtype == from_bf16.dtype == torch.bfloat16
    # both round to bf16 (8 bits of mantissa) at different points: compare at bf16 precision
    torch.testing.assert_close(result.float(), expected.float(), atol=0.05, rtol=0.02)
    result.float().sum().backward()
    assert ours.weight.grad.dtype == torch.float32


def test_autocast_functional_and_locally_connected():
    x, weight = torch.randn(2, 3, 6, 6), torch.randn(5, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert unfoldconv.conv(x, weight).dtype == torch.bfloat16
        layer = layers.LocallyConnected2d(3, 5, (6, 6), 3)
        assert layer(x).dtype == torch.bfloat16
        assert unfoldconv.conv(x.double(), weight.double()).dtype == torch.float64  # as torch


def test_conv_transpose_output_size_of_unbatched_input():
    torch.manual_seed(0)
    native = nn.ConvTranspose2d(4, 6, 3, stride=2)
    ours = layers.ConvTranspose2d(4, 6, 3, stride=2)
    ours.load_state_dict(native.state_dict())
    x = torch.randn(4, 8, 8)
    for output_size in [(18, 18), (6, 18, 18)]:
        torch.testing.assert_close(
            ours(x, output_size=output_size), native(x, output_size=output_size)
        )


def test_numpy_integer_sizes():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(
        unfoldconv.unfold(x, np.int64(3), padding=np.int32(1)), unfoldconv.unfold(x, 3, padding=1)
    )
    assert torch.equal(unfoldconv.unfold(x, (np.int64(2), 3)), unfoldconv.unfold(x, (2, 3)))


def test_repr_of_string_padding_matches_torch():
    assert repr(layers.Conv2d(3, 4, 3, padding="same")) == repr(nn.Conv2d(3, 4, 3, padding="same"))


def test_patch_embed_rejects_bad_dim():
    with pytest.raises(ValueError, match=r"dim must be a positive int or None, got dim=0"):
        layers.PatchEmbed(4, 3, 5, dim=0)

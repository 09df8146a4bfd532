"""Under torch.autocast the weight-carrying ops cast as torch's convs do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import unfoldconv
from tests.helpers import params
from unfoldconv import layers

# (id, our layer, torch's twin, input shape)
TWINS = [
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
    (
        "Conv2d-patches",  # the non-overlapping route
        lambda: layers.Conv2d(4, 6, 2, stride=2),
        lambda: nn.Conv2d(4, 6, 2, stride=2),
        (2, 4, 8, 8),
    ),
]


@pytest.mark.parametrize(("make", "make_native", "shape"), params(TWINS))
def test_layers_follow_autocast_like_torch(make, make_native, shape):
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


def test_functional_and_locally_connected_follow_autocast():
    x, weight = torch.randn(2, 3, 6, 6), torch.randn(5, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert unfoldconv.conv(x, weight).dtype == torch.bfloat16
        layer = layers.LocallyConnected2d(3, 5, (6, 6), 3)
        assert layer(x).dtype == torch.bfloat16
        assert unfoldconv.conv(x.double(), weight.double()).dtype == torch.float64  # as torch

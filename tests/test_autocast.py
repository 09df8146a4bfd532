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
    """bf16 outputs equal the float64 result of the bf16-rounded operands, rounded to bf16 (as
    torch's conv), at bf16's default tolerance; the fp32 weight and bias gradients equal
    torch's at bf16 precision (both are bf16 results cast back)."""
    torch.manual_seed(0)
    native = make_native()
    ours = make()
    ours.load_state_dict(native.state_dict())
    x = torch.randn(shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, result = native(x), ours(x)
        from_bf16 = ours(x.bfloat16())  # an activation already in bf16 is accepted
    assert result.dtype == expected.dtype == from_bf16.dtype == torch.bfloat16
    assert torch.equal(from_bf16, result)  # autocast casts x to the same bf16 values
    exact = make_native().double()  # the bf16-rounded operands, computed in float64
    exact.load_state_dict({k: v.bfloat16().double() for k, v in native.state_dict().items()})
    rounded = exact(x.bfloat16().double()).bfloat16()
    # the products are summed in float32 and rounded to bf16, then the bias is added in bf16
    # (torch's conv too): an output that cancels to near zero keeps the rounding error of the
    # terms it cancels, one bf16 ulp of the largest output at most (plus the default rtol)
    atol = torch.finfo(torch.bfloat16).eps * rounded.abs().max().item()
    torch.testing.assert_close(result, rounded, atol=atol, rtol=1.6e-2)
    torch.testing.assert_close(expected, rounded, atol=atol, rtol=1.6e-2)  # torch's conv
    grad = torch.randn_like(result, dtype=torch.float32)
    result.float().backward(grad)
    expected.float().backward(grad)
    exact(x.bfloat16().double()).backward(grad.bfloat16().double())  # bf16 grad_output too
    for name, parameter in ours.named_parameters():
        native_grad = dict(native.named_parameters())[name].grad
        exact_grad = dict(exact.named_parameters())[name].grad.float()
        assert parameter.grad.dtype == native_grad.dtype == torch.float32, name
        # each gradient is a bf16 sum over N * L products: near-zero entries keep the
        # rounding error of the terms they cancel, as for the outputs above
        atol = torch.finfo(torch.bfloat16).eps * exact_grad.abs().max().item()
        for who, value in (("ours", parameter.grad), ("torch", native_grad)):
            torch.testing.assert_close(
                value,
                exact_grad,
                atol=atol,
                rtol=1.6e-2,
                msg=lambda m, w=who, n=name: f"{w} {n}: {m}",
            )


def test_functional_and_locally_connected_follow_autocast():
    x, weight = torch.randn(2, 3, 6, 6), torch.randn(5, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert unfoldconv.conv(x, weight).dtype == torch.bfloat16
        layer = layers.LocallyConnected2d(3, 5, (6, 6), 3)
        assert layer(x).dtype == torch.bfloat16
        assert unfoldconv.conv(x.double(), weight.double()).dtype == torch.float64  # as torch

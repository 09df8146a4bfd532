"""An in-place op right after ours (``nn.ReLU(inplace=True)``, ``relu_``): values and gradients
as with torch's ops. Autograd forbids in-place ops on a custom Function's *view* outputs, so
every op must return a tensor of its own, on every route."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import unfoldconv

X_SHAPE = (2, 3, 8, 8)

CASES = {
    "unfold": (
        lambda x: unfoldconv.unfold(x, 3, padding=1),
        lambda x: F.unfold(x, 3, padding=1),
    ),
    "fold": (
        lambda x: unfoldconv.fold(x.reshape(2, 12, 16), (5, 5), 2),
        lambda x: F.fold(x.reshape(2, 12, 16), (5, 5), 2),
    ),
    "fold s2 (compiled CPU fold)": (
        lambda x: unfoldconv.fold(x.reshape(2, 12, 16), (8, 8), 2, stride=2),
        lambda x: F.fold(x.reshape(2, 12, 16), (8, 8), 2, stride=2),
    ),
}
WEIGHT = torch.randn(4, 3, 3, 3, dtype=torch.float64)
BIAS = torch.randn(4, dtype=torch.float64)
for name, kwargs in {
    "conv one chunk": dict(padding=1),
    "conv chunks of samples": dict(padding=1, workspace_bytes=3 * 27 * 64 * 8),
    "conv slabs of rows": dict(padding=1, workspace_bytes=100),
    "conv stride 2": dict(stride=2),
}.items():
    CASES[name] = (
        lambda x, kw=kwargs: unfoldconv.conv(x, WEIGHT, BIAS, **kw),
        lambda x, kw=kwargs: F.conv2d(
            x, WEIGHT, BIAS, **{k: v for k, v in kw.items() if k != "workspace_bytes"}
        ),
    )
WEIGHT_T = torch.randn(3, 4, 3, 3, dtype=torch.float64)
CASES["conv_transpose s2"] = (
    lambda x: unfoldconv.conv_transpose(x, WEIGHT_T, stride=2),
    lambda x: F.conv_transpose2d(x, WEIGHT_T, stride=2),
)
CASES["conv_transpose s1"] = (
    lambda x: unfoldconv.conv_transpose(x, WEIGHT_T, padding=1),
    lambda x: F.conv_transpose2d(x, WEIGHT_T, padding=1),
)
# locally connected with the same kernel at every position is the convolution
SHARED = WEIGHT.expand(6, 6, *WEIGHT.shape)
for name, budget in {"locally_connected": None, "locally_connected slabs": 100}.items():
    CASES[name] = (
        lambda x, b=budget: unfoldconv.locally_connected(x, SHARED, workspace_bytes=b),
        lambda x: F.conv2d(x, WEIGHT),
    )


@pytest.mark.parametrize("requires_grad", [True, False], ids=["grad", "no-grad"])
@pytest.mark.parametrize("ours, theirs", CASES.values(), ids=CASES.keys())
def test_relu_inplace_after_the_op(ours, theirs, requires_grad):
    x = torch.randn(X_SHAPE, dtype=torch.float64, requires_grad=requires_grad)
    mine, expected = torch.relu_(ours(x)), torch.relu_(theirs(x))
    torch.testing.assert_close(mine, expected)
    if requires_grad:
        grad = torch.randn_like(expected)
        (mine_grad,) = torch.autograd.grad(mine, x, grad)
        (expected_grad,) = torch.autograd.grad(expected, x, grad)
        torch.testing.assert_close(mine_grad, expected_grad)


def test_inplace_relu_layer_after_our_conv_layers():
    from unfoldconv.layers import Conv2d, convert

    torch.manual_seed(0)
    native = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(inplace=True), torch.nn.Conv2d(8, 4, 3)
    ).double()
    ours = convert(native, to="unfold")
    assert isinstance(ours[0], Conv2d)
    x = torch.randn(X_SHAPE, dtype=torch.float64)
    torch.testing.assert_close(ours(x), native(x))
    grad = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    mine = torch.autograd.grad(ours(x), list(ours.parameters()), grad)
    expected = torch.autograd.grad(native(x), list(native.parameters()), grad)
    for a, b in zip(mine, expected):
        torch.testing.assert_close(a, b)

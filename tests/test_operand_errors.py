"""Operand checks no other table reaches: a weight or bias on another device, a bias of
another dtype, a bias that is not a tensor, an empty size tuple. Each error is matched on the
argument's name and the value received (the wording around them may change)."""

from __future__ import annotations

import pytest
import torch

import unfoldconv
from tests.helpers import params

X = torch.randn(2, 4, 6, 6)
W = torch.randn(6, 4, 3, 3)  # conv: (C_out, C_in, *kernel)
W_T = torch.randn(4, 6, 3, 3)  # conv_transpose: (C_in, C_out, *kernel)
W_LC = torch.randn(4, 4, 6, 4, 3, 3)  # locally_connected: (*out, C_out, C_in, *kernel)
B, B_LC = torch.randn(6), torch.randn(6, 4, 4)

# (id, call, error, regex: the argument's name and the value received)
CASES = [
    ("conv-weight-device", lambda: unfoldconv.conv(X, W.to("meta")), ValueError, r"weight.*meta"),
    ("conv-bias-device", lambda: unfoldconv.conv(X, W, B.to("meta")), ValueError, r"bias.*meta"),
    ("conv-bias-dtype", lambda: unfoldconv.conv(X, W, B.double()), TypeError, r"bias.*float64"),
    ("conv-weight-dtype", lambda: unfoldconv.conv(X, W.double()), TypeError, r"weight.*float64"),
    ("conv-bias-list", lambda: unfoldconv.conv(X, W, [0.0] * 6), TypeError, r"bias.*list"),
    ("conv-empty-stride", lambda: unfoldconv.conv(X, W, stride=()), ValueError, r"stride.*\(\)"),
    (
        "conv_transpose-weight-device",
        lambda: unfoldconv.conv_transpose(X, W_T.to("meta")),
        ValueError,
        r"weight.*meta",
    ),
    (
        "conv_transpose-bias-dtype",
        lambda: unfoldconv.conv_transpose(X, W_T, B.double()),
        TypeError,
        r"bias.*float64",
    ),
    (
        "conv_transpose-bias-list",
        lambda: unfoldconv.conv_transpose(X, W_T, [0.0] * 6),
        TypeError,
        r"bias.*list",
    ),
    (
        "conv_transpose-empty-padding",
        lambda: unfoldconv.conv_transpose(X, W_T, padding=()),
        ValueError,
        r"padding.*\(\)",
    ),
    (
        "locally_connected-weight-device",
        lambda: unfoldconv.locally_connected(X, W_LC.to("meta")),
        ValueError,
        r"weight.*meta",
    ),
    (
        "locally_connected-bias-dtype",
        lambda: unfoldconv.locally_connected(X, W_LC, B_LC.double()),
        TypeError,
        r"bias.*float64",
    ),
    (
        "locally_connected-bias-tuple",
        lambda: unfoldconv.locally_connected(X, W_LC, (0.0,) * 6),
        TypeError,
        r"bias.*tuple",
    ),
    (
        "unfold-empty-kernel",
        lambda: unfoldconv.unfold(X, ()),
        ValueError,
        r"kernel_size.*\(\)",
    ),
    (
        "fold-empty-output-size",
        lambda: unfoldconv.fold(torch.randn(2, 36, 16), (), 3),
        ValueError,
        r"output_size.*\(\)",
    ),
    (
        "unfold_transpose-empty-dilation",
        lambda: unfoldconv.unfold_transpose(X, 3, dilation=()),
        ValueError,
        r"dilation.*\(\)",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), params(CASES))
def test_operand_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()

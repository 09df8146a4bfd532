"""The engine ops compile with torch.compile(fullgraph=True), forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import params
from tests.reference import unfold_loop, unfold_transpose_loop
from unfoldconv import fold, unfold, unfold_transpose

# (id, op, its reference (torch's op or the loops), input shape)
OPS = [
    (
        "unfold",
        lambda x: unfold(x, 3, padding=1, stride=2),
        lambda x: F.unfold(x, 3, padding=1, stride=2),
        (2, 3, 8, 8),
    ),
    (
        "fold",
        lambda c: fold(c, (8, 8), 3, padding=1, stride=2),
        lambda c: F.fold(c, (8, 8), 3, padding=1, stride=2),
        (2, 27, 16),
    ),
    (
        "unfold_transpose",
        lambda x: unfold_transpose(x, 3, stride=2, padding=1),
        lambda x: unfold_transpose_loop(x, 3, stride=2, padding=1),
        (2, 3, 4, 4),
    ),
    (
        "unfold-3d",
        lambda x: unfold(x, (2, 2, 2), stride=2),
        lambda x: unfold_loop(x, (2, 2, 2), stride=2),
        (1, 2, 4, 4, 4),
    ),
]


@pytest.mark.parametrize("op, reference, shape", params(OPS))
def test_fullgraph_compile_matches_reference(op, reference, shape):
    """Compiled values and gradients against torch's op or the loops, and against eager."""
    torch._dynamo.reset()
    compiled = torch.compile(op, fullgraph=True, backend="aot_eager")
    x = torch.randn(shape, requires_grad=True)
    expected = reference(x)
    (expected_grad,) = torch.autograd.grad(expected.pow(2).sum(), x)
    eager = op(x)
    (eager_grad,) = torch.autograd.grad(eager.pow(2).sum(), x)
    result = compiled(x)
    (result_grad,) = torch.autograd.grad(result.pow(2).sum(), x)
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(result_grad, expected_grad)
    torch.testing.assert_close(result, eager)
    torch.testing.assert_close(result_grad, eager_grad)


@pytest.mark.slow
def test_inductor_compile_matches_torch():
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: unfold(x, 3, padding=1), fullgraph=True)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(compiled(x), F.unfold(x, 3, padding=1))

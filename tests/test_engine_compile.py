"""The engine ops compile with torch.compile(fullgraph=True), forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import params
from unfoldconv import fold, unfold, unfold_transpose

OPS = [
    ("unfold", lambda x: unfold(x, 3, padding=1, stride=2), (2, 3, 8, 8)),
    ("fold", lambda c: fold(c, (8, 8), 3, padding=1, stride=2), (2, 27, 16)),
    ("unfold_transpose", lambda x: unfold_transpose(x, 3, stride=2, padding=1), (2, 3, 4, 4)),
    ("unfold-3d", lambda x: unfold(x, (2, 2, 2), stride=2), (1, 2, 4, 4, 4)),
]


@pytest.mark.parametrize("op, shape", params(OPS))
def test_fullgraph_compile_matches_eager(op, shape):
    torch._dynamo.reset()
    compiled = torch.compile(op, fullgraph=True, backend="aot_eager")
    x = torch.randn(shape, requires_grad=True)
    eager = op(x)
    (eager_grad,) = torch.autograd.grad(eager.pow(2).sum(), x)
    result = compiled(x)
    (result_grad,) = torch.autograd.grad(result.pow(2).sum(), x)
    torch.testing.assert_close(result, eager)
    torch.testing.assert_close(result_grad, eager_grad)


@pytest.mark.slow
def test_inductor_compile_matches_torch():
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: unfold(x, 3, padding=1), fullgraph=True)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(compiled(x), F.unfold(x, 3, padding=1))

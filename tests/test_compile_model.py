"""``torch.compile(fullgraph=True)`` of the README's small model built from our layers: one graph,
no break, no recompile for new data of the same shape, values and gradients of torch's twin."""

from __future__ import annotations

import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend
from torch.testing import assert_close

from unfoldconv import layers


def _readme_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))


def test_small_model_fullgraph_matches_torch_and_does_not_recompile():
    torch._dynamo.reset()
    native = _readme_model()
    ours = layers.convert(_readme_model())
    counter = CompileCounterWithBackend("aot_eager")  # aot_eager: the real autograd, fast
    compiled = torch.compile(ours, fullgraph=True, backend=counter)
    for _ in range(2):  # new data of the same shape: the same graph
        x = torch.randn(4, 3, 16, 16, requires_grad=True)
        out = compiled(x)
        expected = native(x)
        # float32: unfold + matmul against torch's conv kernels
        assert_close(out, expected, rtol=1e-5, atol=1e-5)
        grads = torch.autograd.grad(out.square().sum(), [x, *ours.parameters()])
        expected_grads = torch.autograd.grad(expected.square().sum(), [x, *native.parameters()])
        for grad, expected_grad in zip(grads, expected_grads):
            assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)
    assert counter.frame_count == 1  # fullgraph=True: one graph, no break; and no recompile

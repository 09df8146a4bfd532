"""The curvature ops on the engine's CUDA route: Triton's unfold kernel, through its interpreter
on CPU tensors (``TRITON_INTERPRET=1``, backend forced to ``"triton"``), equals the torch route."""

from __future__ import annotations

import pytest
import torch

import unfoldconv
from unfoldconv import kernels
from unfoldconv.curvature import kfac_input_factor, per_sample_grad, per_sample_grad_norm

pytest.importorskip("triton")


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("UNFOLDCONV_BACKEND", raising=False)


@pytest.fixture
def unfold_launches(monkeypatch):
    calls = []
    launcher = kernels.unfold

    def counted(*args, **kwargs):
        calls.append(1)
        return launcher(*args, **kwargs)

    monkeypatch.setattr(kernels, "unfold", counted)
    return calls


CASES = {
    "2d-stride2-groups2": ((2, 4, 6, 5), (3, 3), dict(stride=2, padding=1, groups=2)),
    "1d-transposed": ((2, 3, 5), (3,), dict(stride=2, padding=1, transposed=True)),
    "3d-slabs": ((1, 2, 4, 3, 4), (2, 2, 2), dict(padding=1, workspace_bytes=300)),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_triton_route_equals_torch_route(name, unfold_launches):
    shape, kernel, kw = CASES[name]
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    groups = kw.get("groups", 1)
    grad_output = random_grad_output(x, kernel, kw)
    with unfoldconv.backend("torch"):
        expected = kfac_input_factor(x, kernel, bias=True, **kw)
        weights = per_sample_grad(x, grad_output, kernel, **kw)
    with unfoldconv.backend("triton"):
        got = kfac_input_factor(x, kernel, bias=True, **kw)
        got_weights = per_sample_grad(x, grad_output, kernel, **kw)
        norms = per_sample_grad_norm(x, grad_output, kernel, **kw)
    assert unfold_launches, "the Triton kernel did not run"
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_weights, weights)
    torch.testing.assert_close(norms, weights.flatten(1).norm(dim=1))
    assert got.shape[0] == groups


def random_grad_output(x, kernel, kw):
    """A random output gradient ``(N, 4, *out)`` of the layer's output size."""
    sizes = {k: v for k, v in kw.items() if k in ("stride", "padding")}
    columns = (
        unfoldconv.unfold_transpose(x, kernel, **sizes)
        if kw.get("transposed")
        else unfoldconv.unfold(x, kernel, **sizes)
    )
    spatial = _output_size(x, kernel, kw)
    assert torch.Size(spatial).numel() == columns.shape[-1]
    generator = torch.Generator().manual_seed(1)
    return torch.randn(x.shape[0], 4, *spatial, dtype=x.dtype, generator=generator)


def _output_size(x, kernel, kw):
    stride, padding = kw.get("stride", 1), kw.get("padding", 0)
    if kw.get("transposed"):
        return [(s - 1) * stride - 2 * padding + k for s, k in zip(x.shape[2:], kernel)]
    return [(s + 2 * padding - k) // stride + 1 for s, k in zip(x.shape[2:], kernel)]

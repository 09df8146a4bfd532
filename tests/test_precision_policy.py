"""The one precision policy on CUDA: the unfold + GEMM convolution routes multiply as cuDNN
does, following ``torch.backends.cudnn.allow_tf32`` rather than the matmul flag."""

from __future__ import annotations

import importlib
import types

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from unfoldconv import _chunked
from unfoldconv._chunked import conv_precision

# the modules, not the functions of the same name that the package exports
conv_module = importlib.import_module("unfoldconv.conv")
conv_transpose = importlib.import_module("unfoldconv.conv_transpose")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def cudnn_tf32(request):
    """``torch.backends.cudnn.allow_tf32`` set to the parameter for the test, the matmul flag to
    its opposite; both restored after. Through ``cudnn.flags``: tests/helpers.py turns torch's
    global flag setters off (``disable_global_flags``), and the context manager still works."""
    cudnn = torch.backends.cudnn
    matmul = torch.backends.cuda.matmul.allow_tf32
    with cudnn.flags(
        enabled=cudnn.enabled,
        benchmark=cudnn.benchmark,
        deterministic=cudnn.deterministic,
        allow_tf32=request.param,
    ):
        torch.backends.cuda.matmul.allow_tf32 = not request.param
        try:
            yield request.param
        finally:
            torch.backends.cuda.matmul.allow_tf32 = matmul


@pytest.mark.parametrize("cudnn_tf32", [True, False], indirect=True)
def test_conv_precision_sets_the_matmul_flag_from_cudnns(cudnn_tf32):
    seen = []

    @conv_precision
    def routine(input, scale=1):
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        return scale

    fake_cuda = types.SimpleNamespace(is_cuda=True)
    assert routine(fake_cuda, scale=3) == 3
    assert seen == [cudnn_tf32]  # inside: the convolution policy
    assert torch.backends.cuda.matmul.allow_tf32 is (not cudnn_tf32)  # restored after
    assert routine(torch.randn(2)) == 1  # a CPU tensor: nothing changes
    assert seen[-1] is (not cudnn_tf32)


def test_every_conv_gemm_site_follows_the_policy():
    for routine in (
        _chunked.conv_chunks,
        _chunked.conv_backward_chunks,
        _chunked.plain_conv,
        conv_module._non_overlapping_conv,
        conv_transpose._fold_route,
        conv_transpose._unfold_route,
    ):
        assert hasattr(routine, "__wrapped__"), routine.__name__


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("cudnn_tf32", [True, False], indirect=True)
def test_unfold_route_on_cuda_follows_cudnn_flag(monkeypatch, cudnn_tf32):
    """With cuDNN's flag off and the matmul flag on, the unfold route is IEEE float32 (close to
    float64); with cuDNN's on and the matmul flag off, it shows TF32's error, as cuDNN does."""
    monkeypatch.setenv("UNFOLDCONV_CONV_ROUTE", "unfold")
    generator = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4, 64, 16, 16, device="cuda", generator=generator, requires_grad=True)
    weight = torch.randn(32, 64, 3, 3, device="cuda", generator=generator, requires_grad=True)
    output = unfoldconv.conv(x, weight, padding=1)
    reference = F.conv2d(x.double(), weight.double(), padding=1)
    error = ((output.double() - reference).abs().max() / reference.abs().max()).item()
    if cudnn_tf32:
        assert error > 1e-5  # TF32's 10-bit mantissa
    else:
        assert error < 1e-5
    grad_output = torch.randn_like(output)
    (grad_x,) = torch.autograd.grad(output, x, grad_output)
    (grad_ref,) = torch.autograd.grad(reference, x, grad_output.double())
    error = ((grad_x.double() - grad_ref).abs().max() / grad_ref.abs().max()).item()
    assert (error > 1e-5) if cudnn_tf32 else (error < 1e-5)

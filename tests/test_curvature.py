"""``unfoldconv.curvature``'s functional ops against slow references and torch's own convs.

References: the columns from the loop unfold of tests/reference.py (``F.unfold`` for d = 2)
on the input padded as the layer pads it (``F.pad``; the package's ``pad_by_mode`` for d = 4,
where ``F.pad`` stops), or ``unfold_transpose`` for transposed convs, then einsum. Per-sample
gradients are checked against ``torch.func.vmap(torch.func.grad(...))`` of torch's own conv
layer (same ``padding_mode``), their norms against the norms of those gradients.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unfoldconv
from tests.reference import unfold_loop
from unfoldconv._padding import pad_by_mode
from unfoldconv.curvature import (
    _per_sample,
    kfac_input_factor,
    kfac_output_factor,
    per_sample_grad,
    per_sample_grad_norm,
)


@dataclass
class Case:
    shape: tuple  # input (N, C_in, *spatial)
    kernel_size: tuple
    c_out: int = 4
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    padding_mode: str = "zeros"
    transposed: bool = False
    output_padding: object = 0
    extra: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return len(self.kernel_size)

    def sizes(self) -> dict:
        kw = dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )
        kw.update(padding_mode=self.padding_mode, transposed=self.transposed)
        if self.transposed:
            kw["output_padding"] = self.output_padding
        return kw


CASES = {
    "1d": Case((3, 4, 11), (3,), padding=1),
    "1d-stride2-dilation2": Case((3, 4, 13), (3,), stride=2, padding=2, dilation=2),
    "1d-reflect": Case((2, 2, 9), (3,), padding=2, padding_mode="reflect"),
    "2d": Case((2, 4, 7, 8), (3, 3), padding=1),
    "2d-groups2-stride2": Case((2, 4, 9, 8), (3, 2), stride=2, padding=(1, 0), groups=2),
    "2d-reflect": Case((2, 3, 6, 7), (3, 3), padding=1, padding_mode="reflect"),
    "2d-replicate": Case((2, 3, 6, 7), (3, 2), padding=(2, 1), padding_mode="replicate"),
    "2d-circular-groups3": Case(
        (2, 6, 6, 5), (3, 3), c_out=6, padding=1, groups=3, padding_mode="circular"
    ),
    "2d-same-even-kernel": Case((2, 3, 7, 6), (2, 4), padding="same", dilation=(1, 2)),
    "2d-same-even-reflect": Case((2, 3, 7, 6), (4, 2), padding="same", padding_mode="reflect"),
    "3d": Case((2, 2, 5, 4, 6), (3, 3, 3), stride=(1, 2, 1), padding=1),
    "3d-circular-groups2": Case(
        (2, 4, 4, 5, 4), (2, 3, 2), padding=1, groups=2, padding_mode="circular"
    ),
    "4d": Case((2, 2, 4, 3, 4, 3), (2, 2, 2, 2), c_out=3, padding=1, stride=(1, 2, 1, 1)),
    "4d-replicate": Case(
        (1, 2, 3, 3, 4, 3), (2, 3, 2, 2), c_out=2, padding=1, padding_mode="replicate"
    ),
    "1d-transposed": Case((2, 4, 6), (3,), stride=2, padding=1, output_padding=1, transposed=True),
    "2d-transposed-groups2": Case(
        (2, 4, 5, 4),
        (3, 2),
        c_out=6,
        stride=2,
        padding=(1, 0),
        dilation=(1, 2),
        groups=2,
        transposed=True,
    ),
    "3d-transposed": Case(
        (1, 2, 3, 4, 3),
        (2, 2, 3),
        c_out=3,
        stride=(2, 1, 2),
        output_padding=(1, 0, 0),
        transposed=True,
    ),
}


def torch_layer(case: Case, dtype=torch.float64) -> nn.Module:
    """torch's own layer of ``case`` (d <= 3)."""
    c_in = case.shape[1]
    name = f"ConvTranspose{case.d}d" if case.transposed else f"Conv{case.d}d"
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation,
              groups=case.groups)  # fmt: skip
    if case.transposed:
        kw["output_padding"] = case.output_padding
    else:
        kw["padding_mode"] = case.padding_mode
    return getattr(nn, name)(c_in, case.c_out, case.kernel_size, dtype=dtype, **kw)


def _pairs(value, d):
    return (value,) * d if isinstance(value, int) else tuple(value)


def reference_columns(case: Case, x: torch.Tensor) -> torch.Tensor:
    """``(N, C_in * K, L)``: the slow loop unfold of the input padded as the layer pads it."""
    if case.transposed:
        return unfoldconv.unfold_transpose(
            x, case.kernel_size, case.stride, case.padding, case.output_padding, case.dilation
        )
    d, kernel = case.d, case.kernel_size
    dilation = _pairs(case.dilation, d)
    if case.padding == "same":  # torch's rule: the odd element at the end
        totals = [dl * (k - 1) for dl, k in zip(dilation, kernel)]
        pairs = [(t // 2, t - t // 2) for t in totals]
    else:
        pairs = [(p, p) for p in _pairs(case.padding, d)]
    mode = {"zeros": "constant"}.get(case.padding_mode, case.padding_mode)
    if d <= 3 or mode == "constant":
        padded = F.pad(x, [side for pair in reversed(pairs) for side in pair], mode=mode)
    else:  # F.pad has no reflect / replicate / circular beyond 3 dims
        padded = pad_by_mode(x, pairs, case.padding_mode)
    columns = unfold_loop(padded, kernel, dilation, 0, case.stride)
    if d == 2:  # and torch's own unfold agrees
        torch.testing.assert_close(
            columns, F.unfold(padded, kernel, dilation=dilation, stride=case.stride)
        )
    return columns


@functools.cache
def case_data(name: str):
    """``(case, x, grad_output, reference columns, reference per-sample grads)``, built once per
    case (the loop reference is slow), from a seed of its own."""
    case = CASES[name]
    generator = torch.Generator().manual_seed(len(name))
    x = torch.randn(case.shape, dtype=torch.float64, generator=generator)
    grad_output = torch.randn(output_shape(case), dtype=torch.float64, generator=generator)
    columns = reference_columns(case, x)
    return case, x, grad_output, columns, reference_per_sample_grads(case, x, grad_output, columns)


def reference_input_factor(case, columns, mode, bias, reduction):
    n, rows, length = columns.shape
    u = columns.view(n, case.groups, rows // case.groups, length)  # (N, g, D, L)
    if mode == "reduce":
        u = u.mean(-1, keepdim=True)
    if bias:
        u = torch.cat([u, u.new_ones((*u.shape[:2], 1, u.shape[3]))], dim=2)
    factor = torch.einsum("ngil,ngjl->gij", u, u)
    if reduction == "mean":
        factor = factor / (n * (length if mode == "expand" else 1))
    return factor


def output_shape(case: Case) -> tuple:
    x = torch.zeros(case.shape)
    if case.d <= 3:
        return tuple(torch_layer(case, torch.float32)(x).shape)
    out = [
        (size + 2 * p - dl * (k - 1) - 1) // s + 1
        for size, p, dl, k, s in zip(
            case.shape[2:], _pairs(case.padding, case.d), _pairs(case.dilation, case.d),
            case.kernel_size, _pairs(case.stride, case.d),
        )
    ]  # fmt: skip
    assert math.prod(out) == reference_columns(case, x[:1]).shape[2]
    return (case.shape[0], case.c_out, *out)


def reference_per_sample_grads(case, x, grad_output, columns):
    """``(weight grads (N, *w), bias grads (N, C_out))``: vmap(grad) of torch's layer (d <= 3);
    for d = 4 the einsum of the columns and the output gradient."""
    if case.d <= 3:
        layer = torch_layer(case)
        params = {name: p.detach() for name, p in layer.named_parameters()}

        def loss(params, x, go):
            out = torch.func.functional_call(layer, params, (x[None],))
            return (out * go[None]).sum()

        grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, grad_output)
        return grads["weight"], grads["bias"]
    n, rows, length = columns.shape
    g = case.groups
    go = grad_output.reshape(n, g, case.c_out // g, length)
    grads = torch.einsum("ngol,ngdl->ngod", go, columns.view(n, g, rows // g, length))
    weight_shape = (case.c_out, case.shape[1] // g, *case.kernel_size)
    return grads.reshape(n, *weight_shape), go.sum(-1).reshape(n, -1)


@pytest.fixture(params=list(CASES), ids=list(CASES))
def data(request):
    return case_data(request.param)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("mode", ["expand", "reduce"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_input_factor_matches_reference(data, mode, bias, reduction):
    case, x, _, columns, _ = data
    expected = reference_input_factor(case, columns, mode, bias, reduction)
    kw = case.sizes()
    got = kfac_input_factor(x, case.kernel_size, mode=mode, bias=bias, reduction=reduction, **kw)
    torch.testing.assert_close(got, expected)
    if mode == "expand":  # a workspace smaller than one sample: slabs of positions
        got = kfac_input_factor(
            x, case.kernel_size, bias=bias, reduction=reduction, workspace_bytes=200, **kw
        )
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("mode", ["expand", "reduce"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_output_factor_matches_reference(mode, reduction):
    grad_output = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    go = grad_output.view(3, 2, 3, 20)  # groups = 2
    if mode == "reduce":
        go = go.sum(-1, keepdim=True)
    expected = torch.einsum("ngil,ngjl->gij", go, go) / (3 if reduction == "mean" else 1)
    got = kfac_output_factor(grad_output, 2, mode=mode, reduction=reduction)
    torch.testing.assert_close(got, expected)


def test_input_factor_float32_blocks():
    """A D large enough for several Gram blocks (only the upper triangle is multiplied)."""
    x = torch.randn(3, 48, 6, 6)
    columns = F.unfold(x, 3, padding=1)  # D = 432: several blocks
    expected = torch.einsum("nil,njl->ij", columns, columns)[None] / (3 * 36)
    got = kfac_input_factor(x, 3, padding=1, workspace_bytes=30_000)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got, got.transpose(1, 2), rtol=0, atol=0)  # exactly symmetric


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["expand", "reduce"])
def test_half_precision_accumulates_in_float32(dtype, mode):
    x = torch.randn(2, 3, 6, 6).to(dtype)
    got = kfac_input_factor(x, 3, padding=1, bias=True, mode=mode)
    assert got.dtype == torch.float32
    # products of half values are exact in float32: the float32 factor of the same values
    torch.testing.assert_close(
        got, kfac_input_factor(x.float(), 3, padding=1, bias=True, mode=mode)
    )
    go = torch.randn(2, 4, 6, 6).to(dtype)
    assert kfac_output_factor(go, mode=mode).dtype == torch.float32
    torch.testing.assert_close(
        kfac_output_factor(go, mode=mode), kfac_output_factor(go.float(), mode=mode)
    )


def test_per_sample_grad_matches_vmap_grad(data):
    case, x, grad_output, _, (expected_w, expected_b) = data
    kw = case.sizes()
    weights, biases = per_sample_grad(x, grad_output, case.kernel_size, bias=True, **kw)
    torch.testing.assert_close(weights, expected_w)
    torch.testing.assert_close(biases, expected_b)
    sliced = per_sample_grad(x, grad_output, case.kernel_size, workspace_bytes=200, **kw)
    torch.testing.assert_close(sliced, expected_w)  # slabs of positions add up


@pytest.mark.parametrize("route", ["ghost", "direct"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_per_sample_grad_norm_matches_materialised(data, route, bias, monkeypatch):
    monkeypatch.setattr(_per_sample, "ghost_applies", lambda *_: route == "ghost")
    case, x, grad_output, _, (expected_w, expected_b) = data
    squares = expected_w.flatten(1).square().sum(1)
    if bias:
        squares = squares + expected_b.square().sum(1)
    got = per_sample_grad_norm(x, grad_output, case.kernel_size, bias=bias, **case.sizes())
    torch.testing.assert_close(got, squares.sqrt())


@pytest.mark.parametrize(
    "c_in, size, ghost", [(64, 4, True), (2, 12, False)], ids=["small-L-wide", "large-L-narrow"]
)
def test_ghost_rule_picks_by_cost(c_in, size, ghost, monkeypatch):
    x = torch.randn(2, c_in, size, size)
    go = torch.randn(2, 32, size, size)
    calls = []
    original = _per_sample._ghost_squares
    monkeypatch.setattr(
        _per_sample, "_ghost_squares", lambda *a: calls.append("ghost") or original(*a)
    )
    norms = per_sample_grad_norm(x, go, 3, padding=1)
    assert (calls == ["ghost"]) == ghost
    expected = per_sample_grad(x, go, 3, padding=1).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, expected)


def test_per_sample_grad_float32_and_bfloat16():
    x, go = torch.randn(3, 4, 6, 6), torch.randn(3, 5, 6, 6)
    layer = nn.Conv2d(4, 5, 3, padding=1)
    params = {name: p.detach() for name, p in layer.named_parameters()}

    def loss(params, x, go):
        return (torch.func.functional_call(layer, params, (x[None],)) * go[None]).sum()

    expected = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, go)
    torch.testing.assert_close(per_sample_grad(x, go, 3, padding=1), expected["weight"])
    x, go = x.bfloat16(), go.bfloat16()
    got = per_sample_grad(x, go, 3, padding=1)
    assert got.dtype == torch.bfloat16
    # the float32 gradients of the same (rounded) values, rounded once to bfloat16
    rounded = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(
        params, x.float(), go.float()
    )
    torch.testing.assert_close(got, rounded["weight"].bfloat16())
    norms = per_sample_grad_norm(x, go, 3, padding=1)
    assert norms.dtype == torch.float32


def test_empty_batch_gives_zeros():
    x, go = torch.randn(0, 3, 5, 5), torch.randn(0, 4, 5, 5)
    for mode in ("expand", "reduce"):
        for reduction in ("mean", "sum"):
            a = kfac_input_factor(x, 3, padding=1, bias=True, mode=mode, reduction=reduction)
            torch.testing.assert_close(a, torch.zeros(1, 28, 28))  # documented: not NaN
            b = kfac_output_factor(go, mode=mode, reduction=reduction)
            torch.testing.assert_close(b, torch.zeros(1, 4, 4))
    weights, biases = per_sample_grad(x, go, 3, padding=1, bias=True)
    assert weights.shape == (0, 4, 3, 3, 3) and biases.shape == (0, 4)
    assert per_sample_grad_norm(x, go, 3, padding=1).shape == (0,)


def test_unbatched_input_is_one_sample():
    x, go = torch.randn(3, 6, 5), torch.randn(4, 6, 5)
    kernel = (3, 3)
    a = kfac_input_factor(x, kernel, padding=1, bias=True)
    torch.testing.assert_close(a, kfac_input_factor(x[None], kernel, padding=1, bias=True))
    weights, biases = per_sample_grad(x, go, kernel, padding=1, bias=True)
    batched = per_sample_grad(x[None], go[None], kernel, padding=1, bias=True)
    torch.testing.assert_close(weights, batched[0][0])
    torch.testing.assert_close(biases, batched[1][0])
    norm = per_sample_grad_norm(x, go, kernel, padding=1)
    assert norm.shape == ()
    torch.testing.assert_close(norm, weights.norm())


def check_error(kind, match, fn, *args, **kwargs):
    with pytest.raises(kind, match=match):
        fn(*args, **kwargs)


X, GO = torch.randn(2, 4, 6, 6), torch.randn(2, 6, 6, 6)

ERRORS = {
    "mode": (ValueError, r"mode must be one of \('expand', 'reduce'\), got mode='full'",
             kfac_input_factor, (X, 3), dict(mode="full")),
    "reduction": (ValueError, r"reduction must be one of .*got reduction='avg'",
                  kfac_input_factor, (X, 3), dict(reduction="avg")),
    "padding_mode": (ValueError, r"padding_mode must be one of .*got padding_mode='wrap'",
                     kfac_input_factor, (X, 3), dict(padding=1, padding_mode="wrap")),
    "transposed-padding_mode": (ValueError, r"padding_mode must be 'zeros' for a transposed",
                                kfac_input_factor, (X, 3),
                                dict(transposed=True, padding_mode="reflect")),
    "input-type": (TypeError, r"input must be a torch.Tensor, got list",
                   kfac_input_factor, ([1.0], 3), {}),
    "input-integer": (TypeError, r"input must be a floating-point tensor, got input of dtype "
                      r"torch.int64", kfac_input_factor, (torch.ones(2, 4, 6, 6).long(), 3), {}),
    "groups": (ValueError, r"input.shape\[1\] \(C_in\) must be divisible by groups=3",
               kfac_input_factor, (X, 3), dict(groups=3)),
    "kernel-too-large": (ValueError, r"kernel_size=\(7, 7\)", kfac_input_factor, (X, 7), {}),
    "bias-type": (TypeError, r"bias must be a bool, got bias='yes'",
                  kfac_input_factor, (X, 3), dict(bias="yes")),
    "workspace": (ValueError, r"workspace_bytes must be positive, got workspace_bytes=0",
                  kfac_input_factor, (X, 3), dict(workspace_bytes=0)),
    "same-stride": (ValueError, r"padding='same' needs stride 1",
                    kfac_input_factor, (X, 3), dict(padding="same", stride=2)),
    "grad_output-shape": (ValueError, r"grad_output must be \(N, C_out, \*out\) with N=2 and "
                          r"out=\(6, 6\).*got grad_output of shape \(2, 6, 4, 4\)",
                          per_sample_grad, (X, torch.randn(2, 6, 4, 4), 3), dict(padding=1)),
    "grad_output-batch": (ValueError, r"with N=2 .*got grad_output of shape \(3, 6, 6, 6\)",
                          per_sample_grad_norm, (X, torch.randn(3, 6, 6, 6), 3),
                          dict(padding=1)),
    "grad_output-groups": (ValueError, r"grad_output.shape\[1\] \(C_out\) must be divisible by "
                           r"groups=4", per_sample_grad, (X, torch.randn(2, 6, 6, 6), 3),
                           dict(padding=1, groups=4)),
    "grad_output-dtype": (TypeError, r"grad_output must have the input's dtype torch.float32",
                          per_sample_grad, (X, GO.double(), 3), dict(padding=1)),
    "output-factor-dims": (ValueError, r"grad_output must be \(N, C_out, \*out\) with at least 2",
                           kfac_output_factor, (torch.randn(5),), {}),
    "output-factor-groups": (ValueError, r"must be divisible by groups=4",
                             kfac_output_factor, (GO,), dict(groups=4)),
    "output-factor-mode": (ValueError, r"mode must be one of", kfac_output_factor, (GO,),
                           dict(mode="diag")),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ERRORS), ids=list(ERRORS))
def test_bad_input_errors(name):
    kind, match, fn, args, kwargs = ERRORS[name]
    check_error(kind, match, fn, *args, **kwargs)

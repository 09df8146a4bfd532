"""Every op and layer under ``torch.func`` (vmap, grad, jacrev, jvp, functional_call), against
torch's own ops (or unfoldNd / a per-position conv loop where torch has none) under the same
transforms. float64 throughout, so the default tolerances hold."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
import torch.nn.functional as F
import unfoldNd
from torch import nn
from torch.func import functional_call, grad, jacrev, jvp, vmap
from torch.testing import assert_close

import unfoldconv
from tests.helpers import params
from unfoldconv import layers

DTYPE = torch.float64
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _locally_connected_loop(x, weight, bias, d, **kwargs):
    """One torch conv per output position, keeping only that position (no in-place writes, so
    it runs under every transform): slow and obvious."""
    out_size = weight.shape[:d]
    columns = [
        TORCH_CONV[d](x, weight[position], None, **kwargs)[(..., *position)]
        for position in itertools.product(*(range(n) for n in out_size))
    ]  # each (N, C_out)
    return torch.stack(columns, -1).unflatten(-1, out_size) + bias


# (id, ours, reference, shapes of the differentiable arguments; the first is the batched input)
OPS = [
    (
        "unfold-2d",
        lambda x: unfoldconv.unfold(x, 3, padding=1, stride=2),
        lambda x: F.unfold(x, 3, padding=1, stride=2),
        [(3, 2, 6, 5)],
    ),
    (
        "unfold-2d-dilation",
        lambda x: unfoldconv.unfold(x, (2, 3), dilation=(2, 1)),
        lambda x: F.unfold(x, (2, 3), dilation=(2, 1)),
        [(3, 2, 6, 5)],
    ),
    (
        "fold-2d",
        lambda c: unfoldconv.fold(c, (6, 5), 3, padding=1, stride=2),
        lambda c: F.fold(c, (6, 5), 3, padding=1, stride=2),
        [(3, 18, 9)],
    ),
    (
        "unfold_transpose-2d",
        lambda x: unfoldconv.unfold_transpose(x, 3, stride=2, padding=1, output_padding=1),
        lambda x: unfoldNd.unfold_transposeNd(x, 3, stride=2, padding=1, output_padding=1),
        [(3, 2, 4, 3)],
    ),
    (
        "conv1d",
        lambda x, w, b: unfoldconv.conv(x, w, b, padding=1),
        lambda x, w, b: F.conv1d(x, w, b, padding=1),
        [(3, 2, 7), (4, 2, 3), (4,)],
    ),
    (
        "conv2d-stride-groups",
        lambda x, w, b: unfoldconv.conv(x, w, b, stride=2, padding=1, groups=2),
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
        [(3, 4, 6, 5), (4, 2, 3, 3), (4,)],
    ),
    (
        "conv2d-dilation-same",
        lambda x, w: unfoldconv.conv(x, w, padding="same", dilation=2),
        lambda x, w: F.conv2d(x, w, padding="same", dilation=2),
        [(3, 2, 6, 6), (3, 2, 3, 2)],
    ),
    (
        "conv2d-1x1",  # the non-overlapping route (a rearrange and one matmul)
        lambda x, w, b: unfoldconv.conv(x, w, b),
        lambda x, w, b: F.conv2d(x, w, b),
        [(3, 4, 3, 3), (2, 4, 1, 1), (2,)],
    ),
    (
        "conv3d",
        lambda x, w: unfoldconv.conv(x, w, padding=(1, 0, 1)),
        lambda x, w: F.conv3d(x, w, padding=(1, 0, 1)),
        [(2, 2, 4, 3, 3), (3, 2, 2, 2, 2)],
    ),
    (
        "conv_transpose2d",
        lambda x, w, b: unfoldconv.conv_transpose(x, w, b, stride=2, padding=1, output_padding=1),
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        [(3, 4, 3, 4), (4, 3, 3, 3), (3,)],
    ),
    (
        "conv_transpose2d-unfold-route-groups",
        lambda x, w: unfoldconv.conv_transpose(x, w, stride=2, groups=2, route="unfold"),
        lambda x, w: F.conv_transpose2d(x, w, stride=2, groups=2),
        [(3, 4, 3, 3), (4, 1, 2, 2)],
    ),
    (
        "conv_transpose1d",
        lambda x, w: unfoldconv.conv_transpose(x, w, stride=3, dilation=2),
        lambda x, w: F.conv_transpose1d(x, w, stride=3, dilation=2),
        [(3, 2, 4), (2, 3, 3)],
    ),
    (
        "locally_connected1d",
        lambda x, w, b: unfoldconv.locally_connected(x, w, b, padding=1),
        lambda x, w, b: _locally_connected_loop(x, w, b, 1, padding=1),
        [(3, 2, 5), (5, 3, 2, 3), (3, 5)],
    ),
    (
        "locally_connected2d-stride-groups",
        lambda x, w, b: unfoldconv.locally_connected(x, w, b, stride=2, groups=2),
        lambda x, w, b: _locally_connected_loop(x, w, b, 2, stride=2, groups=2),
        [(3, 4, 5, 5), (2, 2, 4, 2, 3, 3), (4, 2, 2)],
    ),
]


def _arguments(shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, dtype=DTYPE, generator=generator) for shape in shapes)


def _per_sample(op):
    """``op`` on one sample: add N = 1, drop it again."""
    return lambda x, *rest: op(x[None], *rest)[0]


def _all(arguments):
    return tuple(range(len(arguments)))


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_vmap_over_the_batch(ours, reference, shapes):
    args = _arguments(shapes)
    in_dims = (0, *([None] * (len(args) - 1)))
    actual = vmap(_per_sample(ours), in_dims=in_dims)(*args)
    assert_close(actual, vmap(_per_sample(reference), in_dims=in_dims)(*args))
    assert_close(actual, reference(*args))


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_vmap_with_the_batched_dim_not_first(ours, reference, shapes):
    args = _arguments(shapes)
    x = args[0].movedim(0, 1)  # (C, B, ...): vmap over dim 1, a non-contiguous slice
    in_dims = (1, *([None] * (len(args) - 1)))
    actual = vmap(_per_sample(ours), in_dims=in_dims)(x, *args[1:])
    assert_close(actual, reference(*args))


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_nested_vmap(ours, reference, shapes):
    args = _arguments(shapes)
    x = torch.stack([args[0], 2 * args[0] + 1])  # (2, B, ...)
    in_dims = (0, *([None] * (len(args) - 1)))
    inner = vmap(_per_sample(ours), in_dims=in_dims)
    actual = vmap(inner, in_dims=in_dims)(x, *args[1:])
    expected = torch.stack([reference(sample, *args[1:]) for sample in x])
    assert_close(actual, expected)


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_vmap_over_every_argument(ours, reference, shapes):
    """An ensemble: each vmapped slice has its own input, weight and bias."""
    args = _arguments(shapes)
    stacked = tuple(torch.stack([arg, arg.flip(0).cos()]) for arg in args)
    actual = vmap(ours)(*stacked)
    assert_close(actual, vmap(reference)(*stacked))


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_grad(ours, reference, shapes):
    args = _arguments(shapes)
    cotangent = torch.randn_like(reference(*args))

    def loss(op):
        return lambda *a: (op(*a) * cotangent).sum()

    argnums = _all(args)
    assert_close(grad(loss(ours), argnums)(*args), grad(loss(reference), argnums)(*args))


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_jacrev(ours, reference, shapes):
    args = _arguments(shapes)
    argnums = _all(args)
    assert_close(jacrev(ours, argnums)(*args), jacrev(reference, argnums)(*args))


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_jvp(ours, reference, shapes):
    args = _arguments(shapes)
    tangents = _arguments(shapes, seed=1)
    assert_close(jvp(ours, args, tangents), jvp(reference, args, tangents))


@pytest.mark.parametrize(("ours", "reference", "shapes"), params(OPS))
def test_hessian_vector_product(ours, reference, shapes):
    """Forward over reverse (jvp of grad), as curvature libraries build their operators."""
    args = _arguments(shapes)
    tangents = _arguments(shapes, seed=1)

    def hvp(op):
        def loss(*a):
            return op(*a).pow(2).sum()

        return jvp(grad(loss, _all(args)), args, tangents)[1]

    assert_close(hvp(ours), hvp(reference))


# (id, our layer, torch's twin or a function (params, x) -> output, input shape)
def _conv2d():
    return nn.Conv2d(2, 4, 3, stride=2, padding=1, dtype=DTYPE)


def _locally_connected_reference(params, x):
    return _locally_connected_loop(x, params["weight"], params["bias"], 2, padding=1)


def _patch_embed_reference(params, x):
    output = F.conv2d(x, params["proj.weight"], params["proj.bias"], stride=2)
    return output.flatten(2).transpose(1, 2)  # (N, D, *grid) -> (N, L, D)


LAYERS = [
    ("Conv2d", lambda: layers.Conv2d.from_native(_conv2d()), _conv2d, (4, 2, 6, 5)),
    (
        "Conv1d-circular",
        lambda: layers.Conv1d(2, 3, 3, padding=1, padding_mode="circular", dtype=DTYPE),
        lambda: nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular", dtype=DTYPE),
        (4, 2, 7),
    ),
    (
        "Conv3d-groups",
        lambda: layers.Conv3d(4, 2, 2, groups=2, dtype=DTYPE),
        lambda: nn.Conv3d(4, 2, 2, groups=2, dtype=DTYPE),
        (3, 4, 3, 3, 3),
    ),
    (
        "ConvTranspose2d",
        lambda: layers.ConvTranspose2d(2, 3, 3, stride=2, dtype=DTYPE),
        lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, dtype=DTYPE),
        (4, 2, 3, 4),
    ),
    (
        "LocallyConnected2d",
        lambda: layers.LocallyConnected2d(2, 3, (5, 4), 3, padding=1, dtype=DTYPE),
        lambda: _locally_connected_reference,
        (4, 2, 5, 4),
    ),
    (
        "PatchEmbed-overlapping",
        lambda: layers.PatchEmbed(3, 2, 4, stride=2, dtype=DTYPE),
        lambda: _patch_embed_reference,
        (4, 2, 7, 7),
    ),
    (
        "PatchEmbed-tiling",
        lambda: layers.PatchEmbed(2, 2, 4, dtype=DTYPE),
        lambda: _patch_embed_reference,
        (4, 2, 6, 6),
    ),
]


def _setup(make_ours, make_reference, shape):
    """Our layer, the reference as ``(params, x) -> output`` and the layer's parameters."""
    torch.manual_seed(0)
    ours = make_ours()
    reference = make_reference()
    if isinstance(reference, nn.Module):
        reference = functools.partial(functional_call, reference)
    weights = {name: param.detach() for name, param in ours.named_parameters()}
    x = torch.randn(shape, dtype=DTYPE)
    return ours, reference, weights, x


def _ours(layer):
    return lambda weights, x: functional_call(layer, weights, (x,))


@pytest.mark.parametrize(("make_ours", "make_reference", "shape"), params(LAYERS))
def test_layer_per_sample_gradients_equal_a_loop(make_ours, make_reference, shape):
    """vmap(grad) + functional_call (Opacus' functorch path) == one backward per sample."""
    ours, reference, weights, x = _setup(make_ours, make_reference, shape)
    target = torch.randn_like(_ours(ours)(weights, x))

    def loss(weights, sample, sample_target):
        output = functional_call(ours, weights, (sample[None],))
        return (output - sample_target[None]).pow(2).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(weights, x, target)
    for i in range(x.shape[0]):
        leaves = {name: w.clone().requires_grad_(True) for name, w in weights.items()}
        output = reference(leaves, x[i : i + 1])
        (output - target[i : i + 1]).pow(2).sum().backward()
        for name, leaf in leaves.items():
            assert_close(per_sample[name][i], leaf.grad, msg=f"sample {i}, {name}")


@pytest.mark.parametrize(("make_ours", "make_reference", "shape"), params(LAYERS))
def test_layer_jacrev_and_jvp_in_the_parameters(make_ours, make_reference, shape):
    ours, reference, weights, x = _setup(make_ours, make_reference, shape)
    expected = jacrev(reference)(weights, x)
    actual = jacrev(_ours(ours))(weights, x)
    for name in weights:
        assert_close(actual[name], expected[name], msg=name)
    tangents = {name: torch.randn_like(w) for name, w in weights.items()}
    assert_close(
        jvp(lambda w: _ours(ours)(w, x), (weights,), (tangents,)),
        jvp(lambda w: reference(w, x), (weights,), (tangents,)),
    )


@pytest.mark.parametrize(("make_ours", "make_reference", "shape"), params(LAYERS))
def test_layer_vmap_and_input_gradient(make_ours, make_reference, shape):
    ours, reference, weights, x = _setup(make_ours, make_reference, shape)

    def per_sample(op):
        return vmap(lambda sample: op(weights, sample[None])[0])

    assert_close(per_sample(_ours(ours))(x), reference(weights, x))

    def input_loss(op):
        return grad(lambda x: op(weights, x).sin().sum())

    assert_close(input_loss(_ours(ours))(x), input_loss(reference)(x))


def test_issue_example_vmap_of_unfold():
    x = torch.randn(4, 2, 5, 5, dtype=DTYPE)
    actual = vmap(lambda xi: unfoldconv.unfold(xi[None], 3))(x)
    assert_close(actual[:, 0], F.unfold(x, 3))


def test_forward_mode_ad_outside_torch_func():
    """``torch.autograd.forward_ad`` (dual tensors) uses the same jvp rules of the engine."""
    import torch.autograd.forward_ad as fwAD

    x, tangent = torch.randn(2, 3, 5, 5, dtype=DTYPE), torch.randn(2, 3, 5, 5, dtype=DTYPE)
    with fwAD.dual_level():
        columns = unfoldconv.unfold(fwAD.make_dual(x, tangent), 3, padding=1)
        output = unfoldconv.fold(columns, (5, 5), 3, padding=1)
        actual = fwAD.unpack_dual(output).tangent
    assert_close(actual, F.fold(F.unfold(tangent, 3, padding=1), (5, 5), 3, padding=1))

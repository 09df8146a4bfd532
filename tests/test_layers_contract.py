"""The same contract over every layer: init under a seed, state_dict both ways with the torch
twin, repr, pickling, device / dtype factory arguments, torch.compile."""

from __future__ import annotations

import io
import pickle

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from tests.helpers import params
from unfoldconv import layers

# (id, our layer factory, torch twin factory or None, input shape)
LAYERS = [
    (
        "Conv1d",
        lambda **f: layers.Conv1d(3, 4, 3, padding=1, **f),
        lambda **f: nn.Conv1d(3, 4, 3, padding=1, **f),
        (2, 3, 9),
    ),
    (
        "Conv2d",
        lambda **f: layers.Conv2d(
            4, 6, 3, stride=2, groups=2, padding_mode="reflect", padding=1, **f
        ),
        lambda **f: nn.Conv2d(4, 6, 3, stride=2, groups=2, padding_mode="reflect", padding=1, **f),
        (2, 4, 8, 8),
    ),
    (
        "Conv3d",
        lambda **f: layers.Conv3d(2, 3, (1, 2, 3), bias=False, **f),
        lambda **f: nn.Conv3d(2, 3, (1, 2, 3), bias=False, **f),
        (1, 2, 4, 5, 6),
    ),
    ("ConvNd", lambda **f: layers.ConvNd(2, 3, 2, dim=4, **f), None, (1, 2, 3, 3, 3, 3)),
    (
        "ConvTranspose1d",
        lambda **f: layers.ConvTranspose1d(3, 2, 3, stride=2, **f),
        lambda **f: nn.ConvTranspose1d(3, 2, 3, stride=2, **f),
        (2, 3, 5),
    ),
    (
        "ConvTranspose2d",
        lambda **f: layers.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, groups=2, **f),
        lambda **f: nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, groups=2, **f),
        (2, 4, 4, 4),
    ),
    (
        "ConvTranspose3d",
        lambda **f: layers.ConvTranspose3d(2, 3, 2, dilation=2, **f),
        lambda **f: nn.ConvTranspose3d(2, 3, 2, dilation=2, **f),
        (1, 2, 3, 3, 3),
    ),
    (
        "ConvTransposeNd",
        lambda **f: layers.ConvTransposeNd(2, 3, (2, 2, 2, 2), **f),
        None,
        (1, 2, 2, 2, 2, 2),
    ),
    ("LocallyConnected1d", lambda **f: layers.LocallyConnected1d(3, 4, 9, 3, **f), None, (2, 3, 9)),
    (
        "LocallyConnected2d",
        lambda **f: layers.LocallyConnected2d(3, 4, (6, 5), 3, padding=1, **f),
        None,
        (2, 3, 6, 5),
    ),
    (
        "LocallyConnected3d",
        lambda **f: layers.LocallyConnected3d(2, 2, 4, 2, stride=2, **f),
        None,
        (1, 2, 4, 4, 4),
    ),
    (
        "PatchEmbed",
        lambda **f: layers.PatchEmbed(4, 3, 8, norm_layer=nn.LayerNorm, **f),
        None,
        (2, 3, 8, 12),
    ),
]
TWINS = [c for c in LAYERS if c[2] is not None]


@pytest.mark.parametrize(("make", "make_native", "shape"), params(TWINS))
def test_same_init_and_state_dict_both_ways(make, make_native, shape):
    torch.manual_seed(1)
    native = make_native()
    torch.manual_seed(1)
    ours = make()
    assert list(ours.state_dict()) == list(native.state_dict())
    for (name, ours_value), (native_name, native_value) in zip(
        ours.state_dict().items(), native.state_dict().items()
    ):
        assert name == native_name
        assert torch.equal(ours_value, native_value), name
    x = torch.randn(shape)
    other = make()  # other random values
    other.load_state_dict(native.state_dict())
    # float32: torch's conv kernels and our GEMMs round differently
    assert_close(other(x), native(x), rtol=1e-5, atol=1e-5)
    native_again = make_native()
    native_again.load_state_dict(ours.state_dict())
    assert_close(native_again(x), ours(x), rtol=1e-5, atol=1e-5)
    assert repr(ours) == repr(native)


@pytest.mark.parametrize(("make", "shape"), params([(c[0], c[1], c[3]) for c in LAYERS]))
def test_pickle_and_float64(make, shape):
    layer = make(dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    x = torch.randn(shape, dtype=torch.float64)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert_close(loaded(x), layer(x))
    assert_close(pickle.loads(pickle.dumps(layer))(x), layer(x))


@pytest.mark.parametrize(("make", "shape"), params([(c[0], c[1], c[3]) for c in LAYERS]))
def test_meta_device(make, shape):
    """Built on meta, materialised and reset under a seed: the layer built on the CPU under
    that seed, the same parameters and outputs."""
    layer = make(device="meta")
    assert all(p.device.type == "meta" for p in layer.parameters())
    layer.to_empty(device="cpu")
    torch.manual_seed(3)
    for module in layer.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    torch.manual_seed(3)
    on_cpu = make()
    for (name, value), (_, expected) in zip(
        layer.state_dict().items(), on_cpu.state_dict().items()
    ):
        assert torch.equal(value, expected), name
    x = torch.randn(shape)
    out = layer(x)
    assert out.device.type == "cpu"
    assert torch.equal(out, on_cpu(x))


@pytest.mark.parametrize(("make", "shape"), params([(c[0], c[1], c[3]) for c in LAYERS]))
def test_backward_reaches_every_parameter(make, shape):
    layer = make()
    layer(torch.randn(shape)).square().sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(("make", "make_native", "shape"), params(LAYERS))
def test_torch_compile_fullgraph(make, make_native, shape):
    """Compiled (fullgraph, float64) against the torch twin where there is one, else eager:
    the output and the gradients of the input and of every parameter."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = make(dtype=torch.float64)
    reference = layer
    if make_native is not None:
        reference = make_native(dtype=torch.float64)
        reference.load_state_dict(layer.state_dict())
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    expected = reference(x_ref)
    assert_close(out, expected)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *layer.parameters()], grad)
    expected_grads = torch.autograd.grad(expected, [x_ref, *reference.parameters()], grad)
    names = ["input", *(name for name, _ in layer.named_parameters())]
    for name, g, g_ref in zip(names, grads, expected_grads):
        assert_close(g, g_ref, msg=lambda m, name=name: f"grad of {name}: {m}")


def test_repr_of_string_padding_matches_torch():
    assert repr(layers.Conv2d(3, 4, 3, padding="same")) == repr(nn.Conv2d(3, 4, 3, padding="same"))


# (id, our layer, the torch class it is): torch's own classes, found by isinstance
SUBCLASSES = [
    ("Conv1d", lambda: layers.Conv1d(3, 4, 3), nn.Conv1d),
    ("Conv2d", lambda: layers.Conv2d(3, 8, 3), nn.Conv2d),
    ("Conv3d", lambda: layers.Conv3d(3, 4, 3), nn.Conv3d),
    ("ConvTranspose1d", lambda: layers.ConvTranspose1d(3, 4, 3), nn.ConvTranspose1d),
    ("ConvTranspose2d", lambda: layers.ConvTranspose2d(3, 4, 3), nn.ConvTranspose2d),
    ("ConvTranspose3d", lambda: layers.ConvTranspose3d(3, 4, 3), nn.ConvTranspose3d),
    ("ConvNd", lambda: layers.ConvNd(3, 4, 3, dim=4), nn.modules.conv._ConvNd),
    (
        "ConvTransposeNd",
        lambda: layers.ConvTransposeNd(3, 4, 3, dim=4),
        nn.modules.conv._ConvTransposeNd,
    ),
]


@pytest.mark.parametrize(("make", "torch_class"), params(SUBCLASSES))
def test_layers_are_torch_classes(make, torch_class):
    layer = make()
    assert isinstance(layer, torch_class)
    # only the computation is ours: torch's extra_repr and the parameters torch registers
    assert type(layer).extra_repr is nn.modules.conv._ConvNd.extra_repr
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


def test_conv_attributes_changed_after_init_are_used():
    """torch reads stride & co. on every forward; so do we (e.g. a stem's stride edited)."""
    torch.manual_seed(0)
    native, ours = nn.Conv2d(3, 4, 3), layers.Conv2d(3, 4, 3)
    ours.load_state_dict(native.state_dict())
    native.stride = ours.stride = (2, 2)
    native.padding = ours.padding = (1, 1)
    x = torch.randn(1, 3, 9, 9)
    # float32: torch's conv kernels and our GEMM round differently
    assert_close(ours(x), native(x), rtol=1e-5, atol=1e-5)

"""convert / from_native / to_native: round trips on a small model, weights kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from unfoldconv import layers


def _model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, groups=2, padding_mode="circular", padding=1)),
        nn.ConvTranspose2d(8, 4, 2, stride=2),
        nn.Flatten(),
    )


def test_round_trip_keeps_weights_and_outputs():
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    converted = layers.convert(model, to="unfold")
    assert isinstance(converted[0], layers.Conv2d)
    assert isinstance(converted[2][0], layers.Conv2d)
    assert isinstance(converted[3], layers.ConvTranspose2d)
    # float32: GEMM vs torch's conv kernels
    assert_close(converted(x), expected, rtol=1e-5, atol=1e-5)
    back = layers.convert(converted, to="native")
    assert type(back[0]) is nn.Conv2d
    assert type(back[3]) is nn.ConvTranspose2d
    for name, value in back.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert_close(back(x), expected)


def test_single_layers_and_nd():
    native = nn.Conv1d(2, 3, 3, dilation=2, bias=False)
    ours = layers.convert(native)
    assert isinstance(ours, layers.Conv1d)
    assert ours.weight is native.weight  # shared, not copied
    assert isinstance(layers.ConvNd.from_native(nn.Conv3d(2, 2, 1)), layers.ConvNd)
    four_d = nn.Sequential(layers.ConvNd(2, 2, 3, dim=4))
    assert isinstance(layers.convert(four_d, "native")[0], layers.ConvNd)  # no torch twin: kept


def test_from_native_does_not_draw_random_numbers():
    native = nn.Conv2d(3, 4, 3)
    state = torch.get_rng_state()
    layers.Conv2d.from_native(native)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: layers.convert(nn.Conv2d(1, 1, 1), to="fast"), ValueError, "to must be"),
        (lambda: layers.Conv3d.from_native(nn.Conv2d(1, 1, 1)), ValueError, "Conv3d has 3"),
        (lambda: layers.Conv2d.from_native(nn.Linear(1, 1)), TypeError, "module must be"),
        (lambda: layers.ConvNd(1, 1, 1, dim=4).to_native(), ValueError, "dim=4"),
    ],
    ids=["bad-target", "wrong-dim", "wrong-class", "no-twin"],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _isinstance_consumer(model):
    """What curvlinops' KFAC and Opacus do: find layers by isinstance, refuse other parameters."""
    supported = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            supported.append(module)
        elif any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"Found parameters in un-supported layers: {type(module).__name__}")
    return supported


def test_converted_model_is_accepted_by_an_isinstance_consumer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)
    )
    converted = layers.convert(model, to="unfold")
    assert isinstance(converted[0], layers.Conv2d)
    assert len(_isinstance_consumer(converted)) == 3
    with pytest.raises(ValueError, match="un-supported layers: LocallyConnected2d"):
        _isinstance_consumer(nn.Sequential(layers.LocallyConnected2d(3, 4, 8, 3)))


def test_convert_leaves_our_layers_alone():
    """Our layers are nn.Conv2d subclasses: convert(to="unfold") must not convert them again."""
    ours = nn.Sequential(layers.Conv2d(3, 4, 3), layers.ConvTranspose2d(4, 2, 2))
    first, second = ours[0], ours[1]
    again = layers.convert(ours, to="unfold")
    assert again[0] is first and again[1] is second
    assert type(layers.convert(ours, to="native")[0]) is nn.Conv2d

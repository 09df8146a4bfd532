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


# -- shared layers, state, hooks ---------------------------------------------------------------


@pytest.mark.parametrize("to", ["unfold", "native"])
def test_shared_layer_is_converted_once(to):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    if to == "native":
        model = layers.convert(model)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    expected = model(x)
    converted = layers.convert(model, to=to)
    assert converted[0] is converted[2]
    assert type(converted[0]) is (layers.Conv2d if to == "unfold" else nn.Conv2d)
    out = converted(x)
    assert_close(out, expected, rtol=1e-5, atol=1e-5)  # float32: GEMM vs torch's conv kernels
    (grad,) = torch.autograd.grad(out.sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_shared_layer_in_two_containers():
    conv = nn.Conv1d(2, 2, 1)
    model = nn.ModuleDict({"a": nn.Sequential(conv), "b": nn.ModuleList([nn.ReLU(), conv])})
    converted = layers.convert(model)
    assert isinstance(converted["a"][0], layers.Conv1d)
    assert converted["a"][0] is converted["b"][1]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_training_flag_is_kept_both_ways(training):
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ConvTranspose3d(1, 1, 1)).train(training)
    ours = layers.convert(model)
    assert [m.training for m in ours] == [training, training]
    back = layers.convert(ours, to="native")
    assert [m.training for m in back] == [training, training]


def test_parameters_are_kept_with_requires_grad():
    model = nn.Sequential(nn.Conv2d(2, 2, 3))
    model[0].weight.requires_grad_(False)
    weight, bias = model[0].weight, model[0].bias
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    ours = layers.convert(model)
    assert ours[0].weight is weight and ours[0].bias is bias
    assert not ours[0].weight.requires_grad and ours[0].bias.requires_grad
    before = bias.detach().clone()
    ours(torch.randn(1, 2, 5, 5)).sum().backward()
    optimizer.step()  # the optimizer built before convert still moves the converted layer
    assert not torch.equal(ours[0].bias, before)
    assert layers.convert(ours, to="native")[0].weight is weight


def _register_every_hook(module, calls):
    """One hook of each kind, each appending its kind to ``calls``; returns their handles."""

    def record(kind):
        def hook(*args, **kwargs):
            calls.append(kind)

        return hook

    return [
        module.register_forward_pre_hook(record("forward_pre")),
        module.register_forward_hook(record("forward")),
        module.register_forward_pre_hook(record("forward_pre_kwargs"), with_kwargs=True),
        module.register_full_backward_pre_hook(record("backward_pre")),
        module.register_full_backward_hook(record("backward")),
        module.register_state_dict_pre_hook(record("state_dict_pre")),
        module.register_state_dict_post_hook(record("state_dict")),
        module.register_load_state_dict_pre_hook(record("load_state_dict_pre")),
        module.register_load_state_dict_post_hook(record("load_state_dict_post")),
    ]


EVERY_HOOK = [
    "forward_pre",
    "forward_pre_kwargs",
    "forward",
    "backward_pre",
    "backward",
    "state_dict_pre",
    "state_dict",
    "load_state_dict_pre",
    "load_state_dict_post",
]


@pytest.mark.parametrize("to", ["unfold", "native"])
def test_every_hook_is_carried_over(to):
    layer = nn.Conv2d(2, 2, 3) if to == "unfold" else layers.Conv2d(2, 2, 3)
    calls = []
    handles = _register_every_hook(layer, calls)
    converted = layers.convert(nn.Sequential(layer), to=to)[0]
    assert converted is not layer
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    converted(x).sum().backward()
    converted.load_state_dict(converted.state_dict())
    assert sorted(calls) == sorted(EVERY_HOOK)
    for handle in handles:  # the handles of the original layer still remove them
        handle.remove()
    calls.clear()
    converted(x).sum().backward()
    converted.load_state_dict(converted.state_dict())
    assert calls == []


# -- what convert leaves alone -------------------------------------------------------------------


class _Scaled(nn.Conv2d):
    def forward(self, input):
        return 2 * super().forward(input)


def _parametrized():
    conv = nn.Conv2d(1, 1, 1)
    return nn.utils.parametrizations.weight_norm(conv)


# (id, module that stays, text the warning says about it)
LEFT_ALONE = [
    (
        "subclass-forward",
        lambda: _Scaled(1, 1, 1),
        "_Scaled: a subclass of Conv2d with its own forward",
    ),
    ("lazy", lambda: nn.LazyConv2d(4, 3), "LazyConv2d: lazy, not yet materialised"),
    ("parametrized", _parametrized, "parametrized"),
    ("old-weight-norm", lambda: nn.utils.weight_norm(nn.Conv1d(1, 1, 1)), "weight_g"),
]


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")
@pytest.mark.parametrize(
    ("make", "reason"), [c[1:] for c in LEFT_ALONE], ids=[c[0] for c in LEFT_ALONE]
)
def test_left_alone_is_named_in_one_warning(make, reason):
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Sequential(make(), make()))
    kept = [model[1][0], model[1][1]]
    with pytest.warns(UserWarning, match="left 2 conv layers") as record:
        converted = layers.convert(model)
    assert len(record) == 1
    message = str(record[0].message)
    assert "'1.0'" in message and "'1.1'" in message and reason in message
    assert isinstance(converted[0], layers.Conv2d)
    assert converted[1][0] is kept[0] and converted[1][1] is kept[1]


def test_strict_refuses_and_leaves_the_model_unchanged():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), _Scaled(1, 1, 1))
    first = model[0]
    with pytest.raises(ValueError, match=r"'1' \(_Scaled: a subclass of Conv2d.*strict=True"):
        layers.convert(model, strict=True)
    assert model[0] is first


def test_materialised_lazy_layer_is_converted():
    lazy = nn.LazyConv2d(4, 3)
    lazy(torch.randn(1, 2, 5, 5))  # now a plain nn.Conv2d
    assert isinstance(layers.convert(nn.Sequential(lazy))[0], layers.Conv2d)


def test_no_torch_twin_on_the_way_back():
    model = nn.Sequential(layers.ConvNd(2, 2, 3, dim=4), layers.Conv2d(2, 2, 3))
    with pytest.warns(UserWarning, match=r"'0' \(ConvNd: d = 4, and torch has no such layer\)"):
        back = layers.convert(model, to="native")
    assert isinstance(back[0], layers.ConvNd) and type(back[1]) is nn.Conv2d
    with pytest.raises(ValueError, match="d = 4"):
        layers.convert(model, to="native", strict=True)


def test_no_warning_when_everything_converts(recwarn):
    layers.convert(_model())
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]

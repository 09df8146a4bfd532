"""The All-CNN-C network and its LightningModule: shapes, init, errors, native == unfold."""

from __future__ import annotations

import functools

import pytest
import torch

from training.allcnnc_net import AllCNNC, conv_layer_shapes, copy_weights
from training.lit_classifier import LitClassifier, param_groups


def build(conv_impl: str, seed: int = 0) -> AllCNNC:
    torch.manual_seed(seed)
    return AllCNNC(conv_impl=conv_impl)


@pytest.mark.parametrize("conv_impl", ["native", "unfold", "lc"])
def test_output_shape_and_deepobs_init(conv_impl):
    net = build(conv_impl)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    layers = net.weight_layers()
    assert len(layers) == 9
    for layer in layers:
        torch.testing.assert_close(layer.bias, torch.full_like(layer.bias, 0.1))
    # Xavier-normal std of the 3x3 192->192 conv: sqrt(2 / (192 * 9 + 192 * 9)) = 0.02406
    std = layers[6].weight.std().item()
    assert 0.0235 < std < 0.0247  # sample std of >= 330k normal draws: within ~0.2%


def test_layer_shapes():
    net = build("native")
    shapes = [tuple(layer.weight.shape) for layer in net.weight_layers()]
    assert shapes == [
        (96, 3, 3, 3),
        (96, 96, 3, 3),
        (96, 96, 3, 3),
        (192, 96, 3, 3),
        (192, 192, 3, 3),
        (192, 192, 3, 3),
        (192, 192, 3, 3),
        (192, 192, 1, 1),
        (100, 192, 1, 1),
    ]
    strides = [layer.stride for layer in net.weight_layers()]
    assert strides[2] == strides[5] == (2, 2)


def test_lc_layer_shapes():
    lc = build("lc").weight_layers()[6]
    assert tuple(lc.weight.shape) == (6, 6, 192, 192, 3, 3)
    assert tuple(lc.bias.shape) == (192, 6, 6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"conv_impl": "cudnn"},
            ValueError,
            r"conv_impl: expected one of \('native', 'unfold', 'lc'\), got 'cudnn'",
            id="conv-impl",
        ),
        pytest.param(
            {"num_classes": 0}, ValueError, r"num_classes: expected an int >= 1, got 0",
            id="num-classes",
        ),
        pytest.param(
            {"num_classes": 10.0}, TypeError, r"num_classes: expected an int >= 1, got 10.0",
            id="num-classes-float",
        ),
    ],
)  # fmt: skip
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AllCNNC(**kwargs)


def _inputs_of_weight_layers(net: AllCNNC, x: torch.Tensor) -> list[torch.Size]:
    """The input shape each weight layer sees, recorded by running ``net.layers`` one by one."""
    seen = []
    for layer in net.layers:
        if hasattr(layer, "weight"):
            seen.append(x.shape)
        x = layer(x)
    return seen


def test_conv_layer_shapes_match_a_plain_forward():
    net = build("native").eval()
    inputs = _inputs_of_weight_layers(net, torch.randn(1, 3, 32, 32))
    expected = [
        (
            f"conv{i}",
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size[0],
            layer.stride[0],
            layer.padding[0],
            shape[-1],
        )
        for i, (layer, shape) in enumerate(zip(net.weight_layers(), inputs), 1)
    ]
    got = [
        (s.name, s.in_channels, s.out_channels, s.kernel_size, s.stride, s.padding, s.input_size)
        for s in conv_layer_shapes()
    ]
    assert got == expected
    assert [s[-1] for s in got] == [32, 32, 33, 16, 16, 17, 8, 6, 6]  # 33, 17: TF-same padding


@pytest.mark.parametrize("conv_impl", ["native", "lc"])
def test_weight_decay_on_weights_only(conv_impl):
    net = build(conv_impl)
    decayed, free = param_groups(net, 5e-4)
    assert decayed["weight_decay"] == 5e-4 and free["weight_decay"] == 0.0
    assert len(decayed["params"]) == len(free["params"]) == 9
    assert all(p is layer.weight for p, layer in zip(decayed["params"], net.weight_layers()))
    assert all(p is layer.bias for p, layer in zip(free["params"], net.weight_layers()))


def _adam(params):
    return torch.optim.Adam(params, lr=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"net": "AllCNNC"}, TypeError, r"net: expected a torch.nn.Module, got str", id="net"
        ),
        pytest.param(
            {"optimizer": 0.1},
            TypeError,
            r"optimizer: expected a callable, got 0.1",
            id="optimizer",
        ),
        pytest.param(
            {"weight_decay": -1.0},
            ValueError,
            r"weight_decay: expected a float >= 0, got -1.0",
            id="wd",
        ),
    ],
)
def test_lit_classifier_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LitClassifier(**{"net": AllCNNC(), "optimizer": _adam, **kwargs})


def test_lit_classifier_optimizer_and_scheduler_as_given():
    """Built in code: the optimiser is the callable's, weight decay on weights only, the
    scheduler wraps it; hparams record the arguments (not the net module)."""
    sgd = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=3)
    model = LitClassifier(AllCNNC(), optimizer=sgd, lr_scheduler=step, weight_decay=1e-3)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.05
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-3, 0.0]
    assert (
        isinstance(scheduler, torch.optim.lr_scheduler.StepLR) and scheduler.optimizer is optimizer
    )
    assert "net" not in model.hparams and model.hparams.optimizer is sgd
    assert LitClassifier(AllCNNC(), optimizer=_adam).configure_optimizers().defaults["lr"] == 1e-3


# ------------------------------------------------------------------ native vs unfold / lc


@pytest.mark.parametrize("conv_impl", ["unfold", "lc"])
def test_same_outputs_at_init(conv_impl):
    native, other = build("native").eval(), build(conv_impl).eval()
    if conv_impl == "lc":
        copy_weights(native, other)
    else:
        for a, b in zip(native.parameters(), other.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # same seed, same numbers
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(other(x), native(x))


def _losses_after_steps(conv_impl: str, steps: int = 3) -> torch.Tensor:
    """Train mode (dropout on, same masks: same seed) with DeepOBS SGD on a fixed batch."""
    net = build(conv_impl, seed=0).train()
    opt = torch.optim.SGD(param_groups(net, 5e-4), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 100, (8,), generator=g)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def test_same_loss_after_optimizer_steps():
    native, unfold = _losses_after_steps("native"), _losses_after_steps("unfold")
    # Float32 sums in another order (unfold + matmul vs the native kernel) differ by ~1e-7
    # relative per op; three SGD steps through nine layers amplify that to ~1e-5.
    torch.testing.assert_close(unfold, native, rtol=1e-4, atol=1e-5)

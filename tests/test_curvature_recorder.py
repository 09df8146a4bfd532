"""``FactorRecorder``: its factors equal the functional ops on the inputs and output gradients
each layer saw, they add up over micro-batches, and across two gloo ranks."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from unfoldconv import layers
from unfoldconv.curvature import FactorRecorder, kfac_input_factor, kfac_output_factor


class SmallCNN(nn.Module):
    """Convs of every kind the recorder reads (torch's and ours, transposed, padding modes,
    'same' with an even kernel, a 3-d ConvNd) and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        self.conv2 = layers.Conv2d(4, 6, 3, stride=2, groups=2)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2, bias=False)
        self.same = layers.ConvNd(4, 4, (2, 2), padding="same", padding_mode="circular")
        self.volume = layers.ConvNd(1, 2, 3, padding=1, dim=3)
        self.act = nn.ReLU()
        self.head = nn.Linear(4 * 8 * 8 + 2 * 4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x))
        h = self.act(self.conv2(h))
        h = self.act(self.up(h))
        h = self.act(self.same(h))  # (N, 4, 8, 8)
        v = self.volume(h[:, :1, :4, :4].unsqueeze(2).expand(-1, -1, 4, -1, -1))  # (N, 2, 4, 4, 4)
        return self.head(torch.cat([h.flatten(1), v.flatten(1)], dim=1))


def seen_by_layers(model: nn.Module, x: torch.Tensor) -> dict:
    """``{name: (layer, input, grad_output)}`` of one forward + backward of a summed loss."""
    seen, handles = {}, []
    for name, layer in model.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, layers.ConvNd, nn.Linear)):

            def hook(layer, args, output, name=name):
                seen[name] = [layer, args[0].detach(), None]
                output.register_hook(lambda grad: seen[name].__setitem__(2, grad))

            handles.append(layer.register_forward_hook(hook))
    model(x).square().sum().backward()
    for handle in handles:
        handle.remove()
    return seen


def functional_factors(seen: dict, mode: str) -> dict:
    """The factors of :func:`kfac_input_factor` / :func:`kfac_output_factor` per layer."""
    factors = {}
    for name, (layer, input, grad_output) in seen.items():
        bias = layer.bias is not None
        if isinstance(layer, nn.Linear):  # (N, in): one position, one group
            input_factor = kfac_input_factor(input[..., None], (1,), mode=mode, bias=bias)
            output_factor = kfac_output_factor(grad_output, mode=mode)
        else:
            input_factor = kfac_input_factor(
                input,
                tuple(layer.kernel_size),
                tuple(layer.stride),
                layer.padding if isinstance(layer.padding, str) else tuple(layer.padding),
                tuple(layer.dilation),
                layer.groups,
                padding_mode=layer.padding_mode,
                transposed=layer.transposed,
                mode=mode,
                bias=bias,
            )
            output_factor = kfac_output_factor(grad_output, layer.groups, mode=mode)
        factors[name] = (input_factor, output_factor)
    return factors


def assert_factors_close(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        for have, want, which in zip(got[name], expected[name], "AB"):
            torch.testing.assert_close(have, want, msg=lambda m, n=name, w=which: f"{n} {w}: {m}")


def record(model: nn.Module, batches, **kwargs) -> FactorRecorder:
    with FactorRecorder(model, **kwargs) as recorder:
        for x in batches:
            model(x).square().sum().backward()
    return recorder


@pytest.mark.parametrize("mode", ["expand", "reduce"])
def test_factors_equal_functional_ops(mode):
    torch.manual_seed(0)
    model = SmallCNN().double()
    x = torch.randn(6, 3, 9, 9, dtype=torch.float64)
    expected = functional_factors(seen_by_layers(model, x), mode)
    recorder = record(model, [x], mode=mode)
    assert_factors_close(recorder.factors(), expected)
    assert recorder.num_samples == 6
    names = {"conv1", "conv2", "up", "same", "volume", "head"}
    assert set(recorder.factors()) == names
    a, b = recorder.factors()["conv2"]
    assert a.shape == (2, 2 * 9 + 1, 2 * 9 + 1) and b.shape == (2, 3, 3)
    assert recorder.factors()["up"][0].shape == (1, 6 * 4, 6 * 4)  # no bias: no ones row


@pytest.mark.parametrize("mode", ["expand", "reduce"])
def test_micro_batches_add_up(mode):
    torch.manual_seed(0)
    model = SmallCNN().double()
    x = torch.randn(6, 3, 9, 9, dtype=torch.float64)
    whole = record(model, [x], mode=mode)
    split = record(model, [x[:2], x[2:5], x[5:]], mode=mode)
    assert_factors_close(split.factors(), whole.factors())
    assert split.num_samples == 6
    split.reset()
    with pytest.raises(ValueError, match="no factors recorded yet"):
        split.factors()


def test_in_place_activation_and_hooks_removed():
    torch.manual_seed(0)
    # torch's convs only: unfoldconv.layers' chunked conv output is a view that autograd
    # refuses to modify in place (a separate issue of the engine, not of the recorder)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.ReLU()).double()
    x = torch.randn(3, 3, 9, 9, dtype=torch.float64)
    expected = record(model, [x]).factors()
    model[1].inplace = model[3].inplace = True  # overwrite the convs' outputs after the hooks
    assert_factors_close(record(model, [x]).factors(), expected)
    recorder = record(model, [x])
    model(x).sum().backward()  # outside the block: not recorded
    assert recorder.num_samples == 3


@pytest.mark.parametrize("mode", ["expand", "reduce"])
def test_patch_embed_and_tokens_of_a_linear(mode):
    torch.manual_seed(0)
    model = nn.Sequential(
        layers.PatchEmbed(patch_size=4, in_channels=3, embed_dim=8), nn.Linear(8, 3)
    ).double()
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    recorder = record(model, [x], mode=mode)
    factors = recorder.factors()
    assert set(factors) == {"0.proj", "1"}
    # the Linear's tokens are positions: (N, L, in) is the 1-d conv input (N, in, L), kernel 1
    tokens = model[0](x).detach()  # (N, 6, 8)
    expected_a = kfac_input_factor(tokens.transpose(1, 2), (1,), mode=mode, bias=True)
    torch.testing.assert_close(factors["1"][0], expected_a)
    grad = 2 * model(x).detach()  # d(sum of squares)/d(output), (N, 6, 3)
    expected_b = kfac_output_factor(grad.transpose(1, 2), mode=mode)
    torch.testing.assert_close(factors["1"][1], expected_b)
    proj = kfac_input_factor(x, 4, stride=4, mode=mode, bias=True)
    torch.testing.assert_close(factors["0.proj"][0], proj)


def test_transposed_output_size_is_read_from_the_output():
    torch.manual_seed(0)
    layer = layers.ConvTranspose2d(2, 3, 3, stride=2, padding=1).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    with FactorRecorder(layer) as recorder:
        layer(x, output_size=(8, 8)).sum().backward()  # output_padding 1, not the layer's 0
    expected = kfac_input_factor(
        x, 3, stride=2, padding=1, output_padding=1, transposed=True, bias=True
    )
    torch.testing.assert_close(recorder.factors()[""][0], expected)


def test_half_precision_layer_gives_float32_factors():
    layer = nn.Conv2d(2, 3, 3).bfloat16()
    with FactorRecorder(layer) as recorder:
        layer(torch.randn(2, 2, 5, 5).bfloat16()).float().sum().backward()
    a, b = recorder.factors()[""]
    assert a.dtype == b.dtype == torch.float32


def test_locally_connected_is_refused_unless_left_out():
    model = nn.Sequential(nn.Conv2d(2, 2, 3), layers.LocallyConnected2d(2, 2, (4, 4), 3))
    with pytest.raises(ValueError, match=r"locally connected layers \['1'\].*layers="):
        FactorRecorder(model)
    with pytest.raises(
        ValueError, match=r"layers must name convolution or nn.Linear layers, got '1'"
    ):
        FactorRecorder(model, layers=["1"])
    recorder = record(model, [torch.randn(2, 2, 6, 6)], layers=["0"])
    assert set(recorder.factors()) == {"0"}


ERRORS = {
    "module": (TypeError, r"module must be a torch.nn.Module, got str", ("net",), {}),
    "mode": (ValueError, r"mode must be one of \('expand', 'reduce'\), got mode='kron'",
             (nn.Linear(2, 2),), dict(mode="kron")),
    "bias": (TypeError, r"bias must be a bool, got bias=1", (nn.Linear(2, 2),), dict(bias=1)),
    "layers-name": (ValueError, r"layers must name layers of module .*got 'conv9'",
                    (nn.Sequential(nn.Linear(2, 2)),), dict(layers=["conv9"])),
    "layers-str": (TypeError, r"layers must be None or an iterable of layer names, got "
                   r"layers='0'", (nn.Sequential(nn.Linear(2, 2)),), dict(layers="0")),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ERRORS), ids=list(ERRORS))
def test_bad_arguments(name):
    kind, match, args, kwargs = ERRORS[name]
    with pytest.raises(kind, match=match):
        FactorRecorder(*args, **kwargs)


def test_factors_before_backward_and_all_reduce_without_group():
    layer = nn.Linear(3, 2)
    with FactorRecorder(layer) as recorder:
        layer(torch.randn(4, 3))  # forward only
        with torch.no_grad():
            layer(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"no factors recorded yet: run forward and backward"):
        recorder.factors()
    with pytest.raises(ValueError, match=r"all_reduce needs an initialised torch\.distributed"):
        recorder.all_reduce()


def _rank_factors(rank: int, world: int, port: int, path: str) -> None:
    """One rank: record its half of the batch, all_reduce, save the factors."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    torch.manual_seed(0)
    model = SmallCNN().double()
    x = torch.randn(6, 3, 9, 9, dtype=torch.float64)
    recorder = record(model, [x[rank * 3 : (rank + 1) * 3]])
    recorder.all_reduce()
    torch.save({"factors": recorder.factors(), "samples": recorder.num_samples}, path + str(rank))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_reduce_over_two_gloo_ranks_gives_the_whole_batch(tmp_path):
    path = os.fspath(tmp_path / "rank")
    mp.spawn(_rank_factors, args=(2, _free_port(), path), nprocs=2, join=True)
    torch.manual_seed(0)
    model = SmallCNN().double()
    x = torch.randn(6, 3, 9, 9, dtype=torch.float64)
    expected = record(model, [x]).factors()
    for rank in range(2):
        saved = torch.load(path + str(rank))
        assert saved["samples"] == 6
        assert_factors_close(saved["factors"], expected)

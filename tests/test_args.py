"""Argument handling shared by every op and layer: NumPy integers, one wording per error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import unfoldconv
from tests.helpers import params
from unfoldconv import layers


def test_numpy_integer_sizes():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(
        unfoldconv.unfold(x, np.int64(3), padding=np.int32(1)), unfoldconv.unfold(x, 3, padding=1)
    )
    assert torch.equal(unfoldconv.unfold(x, (np.int64(2), 3)), unfoldconv.unfold(x, (2, 3)))


# (id, our layer, torch's twin) built from NumPy integers, as torch accepts them
NUMPY_LAYERS = [
    (
        "Conv2d",
        lambda: layers.Conv2d(np.int64(3), np.int32(4), np.int64(3), groups=np.int64(1)),
        lambda: nn.Conv2d(np.int64(3), np.int32(4), np.int64(3), groups=np.int64(1)),
    ),
    (
        "ConvTranspose1d",
        lambda: layers.ConvTranspose1d(np.int64(2), 4, (np.int64(3),), stride=np.int64(2)),
        lambda: nn.ConvTranspose1d(np.int64(2), 4, (np.int64(3),), stride=np.int64(2)),
    ),
]


@pytest.mark.parametrize(("make", "make_native"), params(NUMPY_LAYERS))
def test_layers_take_numpy_integers_like_torch(make, make_native):
    ours, native = make(), make_native()
    assert ours.weight.shape == native.weight.shape
    assert all(type(v) is int for v in (*ours.kernel_size, *ours.stride, ours.in_channels))
    local = layers.LocallyConnected2d(np.int64(2), 3, np.int64(5), np.int64(3))
    assert local.weight.shape == (3, 3, 3, 2, 3, 3)


SAME_ON_TRANSPOSED = [
    (
        "unfold_transpose",
        lambda: unfoldconv.unfold_transpose(torch.randn(1, 2, 4, 4), 3, padding="same"),
    ),
    ("UnfoldTranspose", lambda: unfoldconv.UnfoldTranspose(3, padding="same")),
    (
        "conv_transpose",
        lambda: unfoldconv.conv_transpose(
            torch.randn(1, 2, 4, 4), torch.randn(2, 3, 3, 3), padding="same"
        ),
    ),
    ("ConvTranspose2d", lambda: layers.ConvTranspose2d(2, 3, 3, padding="same")),
    ("ConvTransposeNd", lambda: layers.ConvTransposeNd(2, 3, (3, 3), padding="valid")),
]


@pytest.mark.parametrize("call", params(SAME_ON_TRANSPOSED))
def test_string_padding_on_a_transposed_op_is_one_error(call):
    with pytest.raises(TypeError) as info:
        call()
    message = str(info.value)
    assert message.startswith(
        "padding must be an int or a tuple of ints for a transposed op ('same' and 'valid' are "
        "for convolutions), got padding="
    ), message


# (id, call, error, regex): wrong types are TypeErrors naming the argument, in every layer
WRONG_TYPES = [
    (
        "Conv2d-in",
        lambda: layers.Conv2d(3.0, 4, 3),
        r"in_channels must be an int, got in_channels=3.0",
    ),
    (
        "Conv2d-groups",
        lambda: layers.Conv2d(4, 4, 3, groups=True),
        r"groups must be an int, got groups=True",
    ),
    (
        "ConvNd-dim",
        lambda: layers.ConvNd(3, 4, 3, dim=2.0),
        r"dim must be an int or None, got dim=2.0",
    ),
    (
        "ConvTranspose2d-out",
        lambda: layers.ConvTranspose2d(3, "4", 3),
        r"out_channels must be an int, got out_channels='4'",
    ),
    (
        "LocallyConnectedNd-dim",
        lambda: layers.LocallyConnectedNd(3, 4, 8, 3, dim=2.0),
        r"dim must be an int or None, got dim=2.0",
    ),
    (
        "PatchEmbed-dim",
        lambda: layers.PatchEmbed(4, 3, 8, dim="2"),
        r"dim must be an int or None, got dim='2'",
    ),
    (
        "PatchEmbed-channels",
        lambda: layers.PatchEmbed(4, 3.0, 8),
        r"in_channels must be an int, got in_channels=3.0",
    ),
    (
        "workspace",
        lambda: unfoldconv.workspace(2.5).__enter__(),
        r"num_bytes must be an int, got num_bytes=2.5",
    ),
]


@pytest.mark.parametrize(("call", "match"), params(WRONG_TYPES))
def test_wrong_types_are_type_errors(call, match):
    with pytest.raises(TypeError, match=match):
        call()

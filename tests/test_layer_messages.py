"""What a layer says about bad input: its own name and arguments, never a private class's or
an internal argument the user never set (``groups`` of PatchEmbed's conv), with plurals right."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import params
from unfoldconv import conv, layers

# (id, call, exception, regex the message must match)
CASES = [
    (
        "locally-connected-3d-missing-input-size",
        lambda: layers.LocallyConnected3d(2, 4, kernel_size=3),
        TypeError,
        r"^LocallyConnected3d\.__init__\(\) missing 1 required positional argument: "
        r"'input_size'$",
    ),
    (
        "conv-2d-missing-kernel-size",
        lambda: layers.Conv2d(2, 4),
        TypeError,
        r"^Conv2d\.__init__\(\) missing 1 required positional argument: 'kernel_size'$",
    ),
    (
        "conv-transpose-1d-unknown-keyword",
        lambda: layers.ConvTranspose1d(2, 4, 3, dim=1),
        TypeError,
        r"^ConvTranspose1d\.__init__\(\) got an unexpected keyword argument 'dim'$",
    ),
    (
        "patch-embed-channels",
        lambda: layers.PatchEmbed(4, 1, 8)(torch.randn(2, 3, 8, 8)),
        ValueError,
        r"^input must have 1 channel \(PatchEmbed's in_channels / in_chans\), got input with 3 "
        r"channels",
    ),
    (
        "patch-embed-int-patch-on-video",
        lambda: layers.PatchEmbed(16)(torch.randn(1, 3, 4, 32, 32)),
        ValueError,
        r"with 2 spatial dims \(every size argument is an int, so d = 2 .*; for 3 spatial dims "
        r"give dim=3 or a 3-tuple patch_size such as \(2, 16, 16\)",
    ),
    (
        "patch-embed-tuple-patch-on-image",
        lambda: layers.PatchEmbed((2, 16, 16))(torch.randn(1, 3, 32, 32)),
        ValueError,
        r"with 3 spatial dims \(patch_size=\(2, 16, 16\) sets d = 3\), got input of shape "
        r"\(1, 3, 32, 32\)$",
    ),
    (
        "conv-layer-one-channel",
        lambda: layers.Conv2d(1, 2, 3)(torch.randn(1, 2, 5, 5)),
        ValueError,
        r"input must have 1 channel \(.*\), got input with 2 channels",
    ),
    (
        "conv-layer-same-with-stride",
        lambda: layers.Conv3d(2, 2, 5, stride=2, padding="same"),
        ValueError,
        r"got stride=\(2, 2, 2\); for ceil\(size / stride\) outputs per dim give "
        r"padding=\(2, 2, 2\)",
    ),
    (
        "functional-conv-one-spatial-dim",
        lambda: conv(torch.randn(5), torch.randn(1, 3, 2)),
        ValueError,
        r"with 1 spatial dim \(",
    ),
]


@pytest.mark.parametrize("call, error, match", params(CASES))
def test_layer_error_messages(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "make",
    [
        lambda: layers.LocallyConnected3d(2, 4, kernel_size=3),
        lambda: layers.ConvTranspose3d(2, 4),
        lambda: layers.PatchEmbed(4, 1, 8)(torch.randn(2, 3, 8, 8)),
        lambda: layers.Conv1d(2, 2, 3)(torch.randn(2, 2, 2, 2, 2)),
    ],
    ids=["locally-connected", "conv-transpose", "patch-embed", "conv-input"],
)
def test_no_private_name_in_messages(make):
    with pytest.raises((TypeError, ValueError)) as info:
        make()
    assert "_FixedDim" not in str(info.value) and "dim(s)" not in str(info.value)

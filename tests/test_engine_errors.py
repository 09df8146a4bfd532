"""Every bad input of API.md §4 for the engine: the right exception, and a message that names the
argument, the value received and what was expected."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import params
from unfoldconv import Fold, Unfold, UnfoldTranspose, fold, unfold, unfold_transpose

X = torch.randn(2, 3, 8, 8)
COLUMNS = torch.randn(2, 27, 36)  # fold to (8, 8) with kernel 3

# (id, call, exception, regex the message must match)
CASES = [
    (
        "kernel-zero",
        lambda: unfold(X, 0),
        ValueError,
        r"kernel_size must be positive, got kernel_size=0",
    ),
    (
        "kernel-negative-entry",
        lambda: unfold(X, (3, -1)),
        ValueError,
        r"kernel_size must be positive, got kernel_size=\(3, -1\)",
    ),
    (
        "stride-zero",
        lambda: unfold(X, 3, stride=(1, 0)),
        ValueError,
        r"stride must be positive, got stride=\(1, 0\)",
    ),
    (
        "dilation-zero",
        lambda: unfold(X, 3, dilation=0),
        ValueError,
        r"dilation must be positive, got dilation=0",
    ),
    (
        "padding-negative",
        lambda: unfold(X, 3, padding=-1),
        ValueError,
        r"padding must be >= 0, got padding=-1",
    ),
    (
        "mismatched-lengths",
        lambda: unfold(X, (3, 3), stride=(1, 1, 1)),
        ValueError,
        r"same length.*kernel_size=\(3, 3\).*stride=\(1, 1, 1\)",
    ),
    (
        "kernel-too-large",
        lambda: unfold(X, 11, padding=1),
        ValueError,
        r"kernel_size=\(11, 11\).*spans 11.*padded input size 10",
    ),
    (
        "dilated-kernel-too-large",
        lambda: unfold(X, 3, dilation=4),
        ValueError,
        r"spans 9 .*padded input size 8",
    ),
    (
        "padding-string-unknown",
        lambda: unfold(X, 3, padding="full"),
        ValueError,
        r"padding must be .*'valid' or 'same', got padding='full'",
    ),
    (
        "same-with-stride",
        lambda: unfold(X, 3, padding="same", stride=2),
        ValueError,
        r"padding='same' needs stride 1.*stride=\(2, 2\)",
    ),
    (
        "kernel-float",
        lambda: unfold(X, 3.0),
        TypeError,
        r"kernel_size must be an int or a tuple of ints, got kernel_size=3.0",
    ),
    (
        "kernel-tuple-of-floats",
        lambda: unfold(X, (3, 2.5)),
        TypeError,
        r"kernel_size must be an int or a tuple of ints, got kernel_size=\(3, 2.5\)",
    ),
    (
        "kernel-bool",
        lambda: unfold(X, True),
        TypeError,
        r"kernel_size must be an int or a tuple of ints, got kernel_size=True",
    ),
    (
        "input-not-tensor",
        lambda: unfold(X.numpy(), 3),
        TypeError,
        r"input must be a torch.Tensor, got ndarray",
    ),
    (
        "input-too-few-dims",
        lambda: unfold(torch.randn(3, 8), 3),
        ValueError,
        r"at least one spatial dim.*shape \(3, 8\)",
    ),
    (
        "input-dims-vs-tuple",
        lambda: unfold(torch.randn(2, 3, 4, 4, 4), (2, 2)),
        ValueError,
        r"\(N, C, \*spatial\) or \(C, \*spatial\) with 2 spatial dim.*\(2, 3, 4, 4, 4\)",
    ),
    (
        "fold-L-mismatch",
        lambda: fold(COLUMNS, (9, 9), 3),
        ValueError,
        r"number of blocks L=49.*got input of shape \(2, 27, 36\)",
    ),
    (
        "fold-channels-not-divisible",
        lambda: fold(torch.randn(2, 26, 36), (8, 8), 3),
        ValueError,
        r"divisible by prod\(kernel_size\)=9.*\(2, 26, 36\)",
    ),
    (
        "fold-output-too-small",
        lambda: fold(COLUMNS, (2, 2), 3),
        ValueError,
        r"spans 3 .*padded output size 2",
    ),
    (
        "fold-output-size-zero",
        lambda: fold(COLUMNS, (0, 8), 3),
        ValueError,
        r"output_size must be positive, got output_size=\(0, 8\)",
    ),
    (
        "fold-input-dims",
        lambda: fold(torch.randn(2, 27, 6, 6), (8, 8), 3),
        ValueError,
        r"\(N, C \* K, L\).*\(2, 27, 6, 6\)",
    ),
    (
        "fold-output-size-type",
        lambda: fold(COLUMNS, "8x8", 3),
        TypeError,
        r"output_size must be an int or a tuple of ints, got output_size='8x8'",
    ),
    (
        "transpose-output-padding",
        lambda: unfold_transpose(X, 3, stride=2, output_padding=2),
        ValueError,
        r"output_padding must be smaller than stride or dilation.*output_padding=\(2, 2\)",
    ),
    (
        "transpose-padding-too-large",
        lambda: unfold_transpose(torch.randn(1, 1, 2, 2), 2, padding=2),
        ValueError,
        r"output size \(-1, -1\).*padding too large",
    ),
    (
        "transpose-padding-string",
        lambda: unfold_transpose(X, 3, padding="same"),
        TypeError,
        r"padding must be an int or a tuple of ints for a transposed op .*got padding='same'",
    ),
    (
        "padding-tuple-sets-d",
        lambda: unfold(X, 3, padding=(1, 1, 2, 2)),
        ValueError,
        r"with 4 spatial dims \(padding=\(1, 1, 2, 2\) sets d = 4 \(padding is one value per "
        r"spatial dim, not F.pad's order\)\), got input of shape \(2, 3, 8, 8\)",
    ),
    (
        "kernel-tuple-sets-d",
        lambda: unfold(X, (3, 3, 3, 3, 3)),
        ValueError,
        r"with 5 spatial dims \(kernel_size=\(3, 3, 3, 3, 3\) sets d = 5\)",
    ),
    (
        "transpose-stride-tuple-sets-d",
        lambda: unfold_transpose(X, 2, stride=(2,)),
        ValueError,
        r"with 1 spatial dim \(stride=\(2,\) sets d = 1\), got input of shape",
    ),
    (
        "fold-volume-as-image",
        lambda: fold(unfold(torch.randn(2, 3, 8, 8, 8), 3, stride=2, padding=1), 8, 3, 1, 1, 2),
        ValueError,
        r"L=16 that output_size=\(8, 8\).*every size argument is an int, so d = 2 \(fold's "
        r"default, as F.fold.*output_size=\(8, 8, 8\) \(d = 3\) gives L=64",
    ),
    (
        "fold-blocks-per-dim",
        lambda: fold(torch.randn(2, 27, 16), (9, 9), 3, stride=2, padding=1),
        ValueError,
        r"L=25 .*\(output_size=\(9, 9\) sets d = 2\); output_size=\(7, 7\) to \(8, 8\) "
        r"gives L=16",
    ),
    (
        "same-with-stride-says-what-to-use",
        lambda: unfold(torch.randn(1, 2, 8, 8, 8), 3, padding="same", stride=2),
        ValueError,
        r"padding='same' needs stride 1 in every dim, got stride=\(2, 2, 2\); for ceil\(size "
        r"/ stride\) outputs per dim give padding=\(1, 1, 1\)",
    ),
    (
        "same-with-stride-even-kernel",
        lambda: unfold(X, (3, 2), padding="same", stride=2),
        ValueError,
        r"give padding=\(1, 0\) .*exact in the dims where dilation \* \(kernel_size - 1\) is "
        r"even; in the others pad one more at the end",
    ),
    (
        "module-unfold-kernel",
        lambda: Unfold(kernel_size=0),
        ValueError,
        r"kernel_size must be positive, got kernel_size=0",
    ),
    (
        "module-fold-lengths",
        lambda: Fold((4, 4), kernel_size=(2, 2, 2)),
        ValueError,
        r"same length .*output_size=\(4, 4\), kernel_size=\(2, 2, 2\)",
    ),
    (
        "module-transpose-stride",
        lambda: UnfoldTranspose(2, stride=-1),
        ValueError,
        r"stride must be positive, got stride=-1",
    ),
]


@pytest.mark.parametrize("call, error, match", params(CASES))
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()

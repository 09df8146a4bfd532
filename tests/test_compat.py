"""unfoldconv.compat is a drop-in for the unfoldNd package."""

from __future__ import annotations

import pytest
import torch
import unfoldNd as reference

import unfoldconv.compat as unfoldNd
from tests.reference import fold_loop, unfold_loop

NAMES = ["unfoldNd", "UnfoldNd", "foldNd", "FoldNd", "unfold_transposeNd", "UnfoldTransposeNd"]


def test_exports_the_six_names():
    assert sorted(unfoldNd.__all__) == sorted(NAMES)
    for name in NAMES:
        assert callable(getattr(unfoldNd, name))


@pytest.mark.parametrize("d", [1, 2, 3], ids=lambda d: f"{d}d")
def test_functions_and_modules_match_unfoldNd(device, d):
    x = torch.randn(2, 3, *([6] * d), device=device)
    kwargs = {"kernel_size": 2, "dilation": 1, "padding": 1, "stride": 2}
    torch.testing.assert_close(unfoldNd.unfoldNd(x, **kwargs), reference.unfoldNd(x, **kwargs))
    torch.testing.assert_close(unfoldNd.UnfoldNd(**kwargs)(x), reference.UnfoldNd(**kwargs)(x))
    columns = reference.unfoldNd(x, **kwargs)
    size = tuple(x.shape[2:])
    torch.testing.assert_close(
        unfoldNd.foldNd(columns, size, **kwargs), reference.foldNd(columns, size, **kwargs)
    )
    torch.testing.assert_close(
        unfoldNd.FoldNd(size, **kwargs)(columns), reference.FoldNd(size, **kwargs)(columns)
    )
    transpose = {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1, "dilation": 1}
    torch.testing.assert_close(
        unfoldNd.unfold_transposeNd(x, **transpose), reference.unfold_transposeNd(x, **transpose)
    )
    out_size = tuple(2 * s for s in size)
    module_kwargs = {k: v for k, v in transpose.items() if k != "output_padding"}
    torch.testing.assert_close(
        unfoldNd.UnfoldTransposeNd(**module_kwargs)(x, output_size=out_size),
        reference.UnfoldTransposeNd(**module_kwargs)(x, output_size=out_size),
    )


def test_foldNd_rejects_non_tuple_output_size_like_unfoldNd():
    columns = torch.randn(1, 4, 9)
    with pytest.raises(
        ValueError, match=r"'output_size' must be tuple. Got <class 'list'>."
    ) as ours:
        unfoldNd.foldNd(columns, [4, 4], 2)
    with pytest.raises(ValueError) as theirs:
        reference.foldNd(columns, [4, 4], 2)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="'output_size' must be tuple"):
        unfoldNd.FoldNd(4, 2)(columns)


def test_goes_beyond_unfoldNd():
    """4-d inputs, bool inputs and fold outputs past 2**24 elements, where unfoldNd gives up."""
    x = torch.randn(1, 2, 3, 4, 3, 4)
    columns = unfoldNd.unfoldNd(x, 2)
    assert columns.shape == (1, 32, 2 * 3 * 2 * 3)
    assert torch.equal(columns, unfold_loop(x, 2))
    mask_columns = unfoldNd.unfoldNd(x > 0, 2)
    assert mask_columns.dtype == torch.bool
    assert torch.equal(mask_columns, columns > 0)  # unfold only copies
    torch.testing.assert_close(
        unfoldNd.foldNd(columns, (3, 4, 3, 4), 2), fold_loop(columns, (3, 4, 3, 4), 2)
    )
    columns = torch.arange(4097 * 4097, dtype=torch.int32).view(1, 1, -1)
    image = unfoldNd.foldNd(columns, (4097, 4097), 1)
    assert torch.equal(image, columns.view(1, 1, 4097, 4097))  # 1x1 kernel: a reshape

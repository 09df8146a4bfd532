"""The curvature ops' arguments: checked, and the layer's input laid out as the engine gathers it.

Every op of :mod:`unfoldconv.curvature` describes one convolution by its input and the
layer's size arguments. :func:`conv_input` checks them (through :mod:`unfoldconv._args`) and
returns a :class:`ConvInput`: the batch ``(N, C_in, *spatial)`` the engine unfolds (padded
first for ``padding_mode`` other than ``"zeros"``, as the layers do; stride-dilated and cropped
for a transposed convolution, as :func:`unfoldconv.unfold_transpose` does) with the
:class:`~unfoldconv._geometry.Geometry` whose columns are the ``u_{n,l}`` of the contract.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from unfoldconv._args import (
    IntOrTuple,
    Padding,
    check_bool,
    check_choice,
    check_divisible,
    check_input_dims,
    check_int,
    check_padding_mode,
    check_tensor,
    check_window_fits,
    check_workspace_bytes,
    checked_transposed_output_size,
    input_dim,
    make_geometry,
    transposed_arguments,
)
from unfoldconv._geometry import Geometry
from unfoldconv._padding import pad_by_mode
from unfoldconv.unfold_transpose import _stride_dilated

MODES = ("expand", "reduce")
REDUCTIONS = ("mean", "sum")


class ConvInput(NamedTuple):
    """One convolution's input as the engine gathers it.

    ``batch`` is ``(N, C_in, *size)`` (unbatched input gets ``N = 1``), ``geometry`` the
    window whose columns are the layer's; ``out_size`` the layer's output spatial size.
    """

    batch: torch.Tensor
    geometry: Geometry
    batched: bool
    groups: int
    out_size: tuple[int, ...]

    @property
    def rows(self) -> int:
        """``D = C_in / groups * K``, the rows of one group's columns."""
        return self.batch.shape[1] // self.groups * self.geometry.kernel_numel

    @property
    def num_positions(self) -> int:
        """``L``, the number of output positions."""
        return math.prod(self.out_size)


def check_mode(mode: object) -> str:
    return check_choice("mode", mode, MODES)


def check_reduction(reduction: object) -> str:
    return check_choice("reduction", reduction, REDUCTIONS)


def check_float(name: str, tensor: torch.Tensor) -> None:
    """Curvature needs a floating tensor (the factors are averages of products)."""
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {name} of dtype {tensor.dtype}"
        )


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16 / bfloat16 (they accumulate in float32), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def conv_input(
    input: object,
    kernel_size: IntOrTuple,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    groups: object,
    padding_mode: object,
    transposed: object,
    output_padding: IntOrTuple,
) -> ConvInput:
    """Check one convolution's arguments and lay its input out as the engine gathers it.

    ``d`` is the length of any tuple size argument, else ``input.dim() - 2`` (as
    :func:`unfoldconv.unfold`).
    """
    input = check_tensor("input", input)
    check_float("input", input)
    groups = check_int("groups", groups)
    transposed = check_bool("transposed", transposed)
    sizes = {"kernel_size": kernel_size, "stride": stride, "padding": padding}
    sizes["dilation"] = dilation
    if transposed:
        sizes["output_padding"] = output_padding
    d = input_dim(input, sizes)
    batched = check_input_dims(input, d)
    batch = input if batched else input.unsqueeze(0)
    check_divisible("input.shape[1] (C_in)", batch.shape[1], groups)
    if transposed:
        padding_mode = check_padding_mode(padding_mode, transposed=True)
        kernel, step, pad, out_pad, dil = transposed_arguments(
            d, kernel_size, stride, padding, output_padding, dilation
        )
        out_size = checked_transposed_output_size(batch.shape[2:], kernel, step, pad, out_pad, dil)
        batch, geometry = _transposed_columns_input(batch, kernel, step, pad, out_pad, dil)
        return ConvInput(batch, geometry, batched, groups, out_size)
    padding_mode = check_padding_mode(padding_mode)
    geometry = make_geometry(d, kernel_size, dilation, padding, stride)
    check_window_fits(batch.shape[2:], geometry)
    if padding_mode != "zeros" and geometry.is_padded:  # pad by mode first, as the layers do
        batch = pad_by_mode(batch, geometry.padding, padding_mode)
        geometry = geometry._replace(padding=((0, 0),) * d)
    return ConvInput(batch, geometry, batched, groups, geometry.output_size(batch.shape[2:]))


def _transposed_columns_input(
    batch: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[torch.Tensor, Geometry]:
    """The stride-dilated, cropped input and flipped geometry of :func:`unfold_transpose`."""
    dilated = _stride_dilated(batch, stride)
    # dil * (k - 1) - p before, that + output_padding after; negative amounts crop (a view)
    before = [dl * (k - 1) - p for k, p, dl in zip(kernel, padding, dilation)]
    after = [b + op for b, op in zip(before, output_padding)]
    crop = tuple(
        slice(max(-b, 0), size - max(-a, 0)) for size, b, a in zip(dilated.shape[2:], before, after)
    )
    geometry = Geometry(
        kernel_size=kernel,
        dilation=dilation,
        padding=tuple((max(b, 0), max(a, 0)) for b, a in zip(before, after)),
        stride=(1,) * len(kernel),
        flip=True,
    )
    return dilated[(..., *crop)], geometry


def check_grad_output(
    grad_output: object, conv: ConvInput, name: str = "grad_output"
) -> torch.Tensor:
    """``grad_output`` as ``(N, C_out, *out)``: it must fit the input and the geometry."""
    grad_output = check_tensor(name, grad_output)
    check_float(name, grad_output)
    n = conv.batch.shape[0]
    expected_dims = len(conv.out_size) + (2 if conv.batched else 1)
    batch = grad_output if conv.batched else grad_output.unsqueeze(0)
    shape = "(N, C_out, *out)" if conv.batched else "(C_out, *out) (the input is unbatched)"
    if (
        grad_output.dim() != expected_dims
        or batch.shape[0] != n
        or tuple(batch.shape[2:]) != conv.out_size
    ):
        raise ValueError(
            f"{name} must be {shape} with N={n} and out={conv.out_size} (the output size of the "
            f"input {tuple(conv.batch.shape[2:])} and the geometry), got {name} of shape "
            f"{tuple(grad_output.shape)}"
        )
    check_divisible(f"{name}.shape[1] (C_out)", batch.shape[1], conv.groups)
    if batch.dtype != conv.batch.dtype or batch.device != conv.batch.device:
        raise TypeError(
            f"{name} must have the input's dtype {conv.batch.dtype} and device "
            f"{conv.batch.device}, got {name} of dtype {batch.dtype} on {batch.device}"
        )
    return batch


def check_workspace(workspace_bytes: object) -> int | None:
    return check_workspace_bytes(workspace_bytes)


def check_flag(name: str, value: object) -> bool:
    return check_bool(name, value)

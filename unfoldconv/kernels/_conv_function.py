"""The implicit-GEMM convolution as autograd functions: forward, input gradient, weight gradient.

Three bilinear maps of one convolution (weight ``w``, geometry, groups):

- ``conv(x, w) -> y`` (:class:`ImplicitConv`, bias fused),
- ``input_grad(g, w) -> x``-shaped (:class:`ImplicitInputGrad`; also the transposed convolution),
- ``weight_grad(x, g) -> w``-shaped (:class:`ImplicitWeightGrad`).

Each one's backward is made of the other two, so gradients of every order exist and all run
on the kernels of :mod:`unfoldconv.kernels._conv`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unfoldconv._geometry import Geometry
from unfoldconv.kernels import _conv, _launch


def pack_weight(weight: torch.Tensor, groups: int, transposed: bool) -> torch.Tensor:
    """The conv weight ``(C_out, C_in / groups, *kernel_size)`` as the window kernel reads it,
    ``(groups, K, C_red, C_out')`` contiguous: for the forward ``C_red = C_in / groups`` and
    ``C_out' = C_out / groups``; ``transposed`` (input gradient) swaps them (the kernel then
    reads the offsets reversed, ``window_conv(..., flip_weight=True)``: no flipped copy)."""
    c_out, c_in_group = weight.shape[:2]
    blocks = weight.reshape(groups, c_out // groups, c_in_group, -1)  # (g, C_out/g, C_in/g, K)
    if transposed:
        return blocks.permute(0, 3, 1, 2).contiguous()  # (g, K, C_out/g, C_in/g)
    return blocks.permute(0, 3, 2, 1).contiguous()  # (g, K, C_in/g, C_out/g)


def memory_format(like: torch.Tensor) -> torch.memory_format:
    """``like``'s memory format as torch's convs pass it on: channels_last (3d) for a
    channels_last tensor, contiguous otherwise."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(like.dim())
    if (
        channels_last is not None
        and not like.is_contiguous()
        and like.is_contiguous(memory_format=channels_last)
    ):
        return channels_last
    return torch.contiguous_format


def _empty(like: torch.Tensor, shape: Sequence[int], layout: torch.memory_format) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=layout)


def conv_forward(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """``(N, C_in, *spatial) -> (N, C_out, *out)``: the convolution, bias fused."""
    shape, layout, pad_before, unit = _forward_layout(
        tuple(input.shape), input.stride(), weight.shape[0], geometry
    )
    output = _empty(input, shape, layout)
    _conv.window_conv(
        input,
        pack_weight(weight, groups, transposed=False),
        None if bias is None else bias.contiguous(),  # the kernel reads it with stride 1
        output,
        geometry.kernel_size,
        geometry.dilation,
        geometry.stride,
        pad_before,
        unit,
    )
    return output


@_launch.plan_cache
def _forward_layout(input_shape, input_strides, c_out: int, geometry: Geometry):
    """``(output shape, memory format, pad_before, (1,) * d)`` of :func:`conv_forward`, cached
    per input shape and strides (a layer's call computes none of them)."""
    like = torch.empty_strided(input_shape, input_strides, device="meta")
    shape = (input_shape[0], c_out, *geometry.output_size(input_shape[2:]))
    pad_before = tuple(lo for lo, _ in geometry.padding)
    return shape, memory_format(like), pad_before, (1,) * geometry.dim


@_launch.plan_cache
def _input_grad_padding(geometry: Geometry) -> tuple[int, ...]:
    """The input gradient's padding before, ``dilation * (kernel_size - 1) - pad_before``."""
    return tuple(
        dil * (k - 1) - lo
        for k, dil, (lo, _) in zip(geometry.kernel_size, geometry.dilation, geometry.padding)
    )


def conv_input_grad(
    grad_output: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    input_size: Sequence[int],
    geometry: Geometry,
    groups: int,
    layout: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """``(N, C_out, *out) -> (N, C_in, *input_size)``: the adjoint of :func:`conv_forward` in
    ``input`` (the input gradient, or the transposed convolution of ``grad_output``), plus
    ``bias`` ``(C_in,)`` if given, in memory format ``layout``.

    Read as a convolution of ``grad_output`` dilated by the stride, stride 1, the kernel
    flipped and transposed, padded by ``dilation * (kernel_size - 1) - pad_before``.
    """
    c_in = weight.shape[1] * groups
    output = _empty(grad_output, (grad_output.shape[0], c_in, *input_size), layout)
    _conv.window_conv(
        grad_output,
        pack_weight(weight, groups, transposed=True),
        None if bias is None else bias.contiguous(),
        output,
        geometry.kernel_size,
        geometry.dilation,
        (1,) * geometry.dim,
        _input_grad_padding(geometry),
        geometry.stride,
        flip_weight=True,
    )
    return output


def conv_weight_grad(
    input: torch.Tensor,
    grad_output: torch.Tensor,
    weight_shape: Sequence[int],
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """``weight_shape`` ``(C_out, C_in / groups, *kernel_size)``: the adjoint of
    :func:`conv_forward` in ``weight`` (the weight gradient), summed in a fixed order."""
    partials = _conv.weight_grad_partials(
        input,
        grad_output,
        groups,
        geometry.kernel_size,
        geometry.dilation,
        geometry.stride,
        [lo for lo, _ in geometry.padding],
    )  # (g, K, C_in/g, C_out/g)
    grad = partials.permute(0, 3, 2, 1)  # -> (g, C_out/g, C_in/g, K)
    return grad.reshape(weight_shape).to(input.dtype)


def _conv_to_size(input, weight, geometry: Geometry, groups: int, size) -> torch.Tensor:
    """The convolution cut to ``size``: the output gradient of a transposed convolution with
    ``output_padding >= stride`` is smaller than a convolution of its output gives (the extra
    positions are no output of the transposed convolution)."""
    output = ImplicitConv.apply(input, weight, None, geometry, groups)
    if tuple(output.shape[2:]) != tuple(size):
        output = output[(..., *(slice(0, s) for s in size))]
    return output


def _bias_grad(grad: torch.Tensor) -> torch.Tensor:
    return grad.sum(dim=(0, *range(2, grad.dim())))  # (N, C, *spatial) -> (C,)


class ImplicitConv(torch.autograd.Function):
    """``conv_forward(input, weight, bias)``; backward through the other two functions."""

    @staticmethod
    def forward(ctx, input, weight, bias, geometry: Geometry, groups: int):
        ctx.save_for_backward(input, weight)
        ctx.geometry, ctx.groups, ctx.has_bias = geometry, groups, bias is not None
        return conv_forward(input, weight, bias, geometry, groups)

    @staticmethod
    def backward(ctx, grad):
        input, weight = ctx.saved_tensors
        geometry, groups = ctx.geometry, ctx.groups
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            size, layout = tuple(input.shape[2:]), memory_format(input)
            grad_input = ImplicitInputGrad.apply(grad, weight, None, size, geometry, groups, layout)
        if ctx.needs_input_grad[1]:
            grad_weight = ImplicitWeightGrad.apply(
                input, grad, tuple(weight.shape), geometry, groups
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = _bias_grad(grad)
        return grad_input, grad_weight, grad_bias, None, None


class ImplicitInputGrad(torch.autograd.Function):
    """``conv_input_grad(grad_output, weight, bias)`` (also the transposed convolution)."""

    @staticmethod
    def forward(ctx, grad_output, weight, bias, input_size, geometry: Geometry, groups, layout):
        ctx.save_for_backward(grad_output, weight)
        ctx.geometry, ctx.groups, ctx.has_bias = geometry, groups, bias is not None
        return conv_input_grad(grad_output, weight, bias, input_size, geometry, groups, layout)

    @staticmethod
    def backward(ctx, grad):
        grad_output, weight = ctx.saved_tensors
        geometry, groups = ctx.geometry, ctx.groups
        grad_grad_output = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_grad_output = _conv_to_size(grad, weight, geometry, groups, grad_output.shape[2:])
        if ctx.needs_input_grad[1]:
            # d<grad, input_grad(g, w)>/dw = weight_grad(grad, g)
            grad_weight = ImplicitWeightGrad.apply(
                grad, grad_output, tuple(weight.shape), geometry, groups
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = _bias_grad(grad)
        return grad_grad_output, grad_weight, grad_bias, None, None, None, None


class ImplicitWeightGrad(torch.autograd.Function):
    """``conv_weight_grad(input, grad_output)``."""

    @staticmethod
    def forward(ctx, input, grad_output, weight_shape, geometry: Geometry, groups: int):
        ctx.save_for_backward(input, grad_output)
        ctx.geometry, ctx.groups = geometry, groups
        return conv_weight_grad(input, grad_output, weight_shape, geometry, groups)

    @staticmethod
    def backward(ctx, grad):
        input, grad_output = ctx.saved_tensors
        geometry, groups = ctx.geometry, ctx.groups
        grad_input = grad_grad_output = None
        if ctx.needs_input_grad[0]:
            size, layout = tuple(input.shape[2:]), memory_format(input)
            grad_input = ImplicitInputGrad.apply(
                grad_output, grad, None, size, geometry, groups, layout
            )
        if ctx.needs_input_grad[1]:
            grad_grad_output = _conv_to_size(input, grad, geometry, groups, grad_output.shape[2:])
        return grad_input, grad_grad_output, None, None, None


def conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """The convolution of a checked batch, differentiable in all three tensors."""
    tensors = (input, weight) if bias is None else (input, weight, bias)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return conv_forward(input, weight, bias, geometry, groups)  # no autograd node needed
    return ImplicitConv.apply(input, weight, bias, geometry, groups)


def conv_transpose(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    output_size: Sequence[int],
    geometry: Geometry,
    groups: int,
) -> torch.Tensor:
    """The transposed convolution of a checked batch: ``weight`` ``(C_in, C_out / groups,
    *kernel_size)`` (torch's transposed layout) read as the weight of the convolution it
    transposes, ``geometry`` that convolution's (kernel, dilation, padding, stride)."""
    size, layout = tuple(output_size), memory_format(input)
    return ImplicitInputGrad.apply(input, weight, bias, size, geometry, groups, layout)

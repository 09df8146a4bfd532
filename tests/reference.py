"""Slow, obviously-correct references: loops over kernel offsets and output positions.

Nothing here calls the package: the convolutions are the loops' columns times the weight (an
einsum), and the transposed convolution is the vector-Jacobian product of that convolution
(torch's autograd through the loops' indexing).
"""

from __future__ import annotations

import itertools
import math

import torch


def _pairs(value, d):
    return (value,) * d if isinstance(value, int) else tuple(value)


def _padding_pairs(padding, kernel_size, dilation, d):
    """``(before, after)`` per dim from an int, a d-tuple, ``"valid"`` or ``"same"``.

    ``"same"`` as torch: total ``dilation * (k - 1)``, the odd element at the end.
    """
    k, dil = _pairs(kernel_size, d), _pairs(dilation, d)
    if padding == "valid":
        return ((0, 0),) * d
    if padding == "same":
        totals = [dl * (kk - 1) for kk, dl in zip(k, dil)]
        return tuple((total // 2, total - total // 2) for total in totals)
    return tuple((p, p) for p in _pairs(padding, d))


def _geometry(d, kernel_size, dilation, padding, stride):
    k, dil, s = (_pairs(v, d) for v in (kernel_size, dilation, stride))
    return k, dil, _padding_pairs(padding, k, dil, d), s


def _out_size(size, k, dil, pad, s):
    return [
        (sz + lo + hi - dl * (kk - 1) - 1) // st + 1
        for sz, (lo, hi), dl, kk, st in zip(size, pad, dil, k, s)
    ]


def output_size(spatial, kernel_size, dilation=1, padding=0, stride=1):
    """The window positions per dim of a convolution over ``spatial`` (torch's formula)."""
    d = len(spatial)
    return tuple(_out_size(spatial, *_geometry(d, kernel_size, dilation, padding, stride)))


def unfold_loop(x, kernel_size, dilation=1, padding=0, stride=1):
    """(N, C, *spatial) -> (N, C*K, L), one output position and kernel offset at a time."""
    d = x.dim() - 2
    k, dil, pad, s = _geometry(d, kernel_size, dilation, padding, stride)
    n, c, *size = x.shape
    padded = x.new_zeros((n, c, *(sz + lo + hi for sz, (lo, hi) in zip(size, pad))))
    padded[(..., *(slice(lo, lo + sz) for (lo, _), sz in zip(pad, size)))] = x
    out = _out_size(size, k, dil, pad, s)
    result = x.new_zeros((n, c, math.prod(k), math.prod(out)))
    offsets = list(itertools.product(*(range(kk) for kk in k)))
    positions = list(itertools.product(*(range(o) for o in out)))
    for ki, offset in enumerate(offsets):
        for li, position in enumerate(positions):
            index = tuple(o * st + kk * dl for o, st, kk, dl in zip(position, s, offset, dil))
            result[:, :, ki, li] = padded[(slice(None), slice(None), *index)]
    return result.reshape(n, c * math.prod(k), math.prod(out))


def fold_loop(columns, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """(N, C*K, L) -> (N, C, *output_size), summing one block element at a time."""
    d = len(output_size)
    k, dil, pad, s = _geometry(d, kernel_size, dilation, padding, stride)
    n = columns.shape[0]
    c = columns.shape[1] // math.prod(k)
    out = _out_size(output_size, k, dil, pad, s)
    blocks = columns.reshape(n, c, math.prod(k), math.prod(out))
    sizes = (sz + lo + hi for sz, (lo, hi) in zip(output_size, pad))
    padded = columns.new_zeros((n, c, *sizes))
    offsets = list(itertools.product(*(range(kk) for kk in k)))
    positions = list(itertools.product(*(range(o) for o in out)))
    for ki, offset in enumerate(offsets):
        for li, position in enumerate(positions):
            index = tuple(o * st + kk * dl for o, st, kk, dl in zip(position, s, offset, dil))
            padded[(slice(None), slice(None), *index)] += blocks[:, :, ki, li]
    return padded[(..., *(slice(lo, lo + sz) for (lo, _), sz in zip(pad, output_size)))]


def conv_loop(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """A convolution (cross-correlation, as ``F.conv*d``) from :func:`unfold_loop` columns."""
    d = x.dim() - 2
    n, c = x.shape[:2]
    k = tuple(weight.shape[2:])
    _, dil, pad, s = _geometry(d, k, dilation, padding, stride)
    out = _out_size(x.shape[2:], k, dil, pad, s)
    columns = unfold_loop(x, k, dilation, padding, stride)  # (N, C*K, L)
    columns = columns.reshape(n, groups, c // groups * math.prod(k), -1)  # (N, g, C/g*K, L)
    kernels = weight.reshape(groups, weight.shape[0] // groups, -1)  # (g, C_out/g, C/g*K)
    output = torch.einsum("gok,ngkl->ngol", kernels, columns).reshape(n, -1, *out)
    if bias is not None:
        output = output + bias.reshape(1, -1, *([1] * d))
    return output


def conv_transpose_loop(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """A transposed convolution (as ``F.conv_transpose*d``): the vector-Jacobian product of
    :func:`conv_loop` with respect to its input, at the vector ``x``."""
    d = x.dim() - 2
    k = tuple(weight.shape[2:])
    s, p, op, dil = (_pairs(v, d) for v in (stride, padding, output_padding, dilation))
    size = [
        (i - 1) * st - 2 * pp + dl * (kk - 1) + o + 1
        for i, st, pp, dl, kk, o in zip(x.shape[2:], s, p, dil, k, op)
    ]
    c_out = weight.shape[1] * groups
    probe = torch.zeros(
        x.shape[0], c_out, *size, dtype=x.dtype, device=x.device, requires_grad=True
    )
    with torch.enable_grad():
        image = conv_loop(probe, weight, None, s, p, dil, groups)
        (output,) = torch.autograd.grad(image, probe, x, create_graph=True)
    if bias is not None:
        output = output + bias.reshape(1, -1, *([1] * d))
    return output


def locally_connected_loop(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """A locally connected layer: at each output position its own kernel times that window."""
    d = x.dim() - 2
    n, c = x.shape[:2]
    out = tuple(weight.shape[:d])
    c_out = weight.shape[d]
    k = tuple(weight.shape[d + 2 :])
    columns = unfold_loop(x, k, dilation, padding, stride)  # (N, C*K, L)
    columns = columns.reshape(n, groups, c // groups * math.prod(k), -1)  # (N, g, C/g*K, L)
    kernels = weight.reshape(math.prod(out), groups, c_out // groups, -1)  # (L, g, C_out/g, C/g*K)
    output = torch.einsum("lgok,ngkl->ngol", kernels, columns).reshape(n, c_out, *out)
    if bias is not None:
        output = output + bias
    return output


def unfold_transpose_loop(x, kernel_size, stride=1, padding=0, output_padding=0, dilation=1):
    """(N, C, *spatial) -> (N, C*K, L_out): the columns whose product with the transposed conv's
    weight is that conv, from its definition: input element ``i`` with kernel offset ``k`` lands
    on output position ``o = i * stride - padding + k * dilation``, so column ``(c, k)`` at ``o``
    holds ``x[c, i]`` where that ``i`` exists, else 0."""
    d = x.dim() - 2
    k, s, p, op, dil = (
        _pairs(v, d) for v in (kernel_size, stride, padding, output_padding, dilation)
    )
    n, c, *size = x.shape
    out = [
        (i - 1) * st - 2 * pp + dl * (kk - 1) + o + 1
        for i, st, pp, dl, kk, o in zip(size, s, p, dil, k, op)
    ]
    result = x.new_zeros((n, c, math.prod(k), math.prod(out)))
    offsets = list(itertools.product(*(range(kk) for kk in k)))
    positions = list(itertools.product(*(range(o) for o in out)))
    for ki, offset in enumerate(offsets):
        for li, position in enumerate(positions):
            index = []
            for o, st, pp, kk, dl, sz in zip(position, s, p, offset, dil, size):
                shifted = o + pp - kk * dl  # = i * stride
                if shifted % st or not 0 <= shifted // st < sz:
                    break
                index.append(shifted // st)
            else:
                result[:, :, ki, li] = x[(slice(None), slice(None), *index)]
    return result.reshape(n, c * math.prod(k), math.prod(out))

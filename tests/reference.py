"""Slow, obviously-correct references: loops over kernel offsets and output positions."""

from __future__ import annotations

import itertools
import math


def _pairs(value, d):
    return (value,) * d if isinstance(value, int) else tuple(value)


def unfold_loop(x, kernel_size, dilation=1, padding=0, stride=1):
    """(N, C, *spatial) -> (N, C*K, L), one output position and kernel offset at a time."""
    d = x.dim() - 2
    k, dil, pad, s = (_pairs(v, d) for v in (kernel_size, dilation, padding, stride))
    n, c, *size = x.shape
    padded = x.new_zeros((n, c, *(sz + 2 * p for sz, p in zip(size, pad))))
    padded[(..., *(slice(p, p + sz) for p, sz in zip(pad, size)))] = x
    out = [
        (sz + 2 * p - dl * (kk - 1) - 1) // st + 1
        for sz, p, dl, kk, st in zip(size, pad, dil, k, s)
    ]
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
    k, dil, pad, s = (_pairs(v, d) for v in (kernel_size, dilation, padding, stride))
    n = columns.shape[0]
    c = columns.shape[1] // math.prod(k)
    out = [
        (sz + 2 * p - dl * (kk - 1) - 1) // st + 1
        for sz, p, dl, kk, st in zip(output_size, pad, dil, k, s)
    ]
    blocks = columns.reshape(n, c, math.prod(k), math.prod(out))
    padded = columns.new_zeros((n, c, *(sz + 2 * p for sz, p in zip(output_size, pad))))
    offsets = list(itertools.product(*(range(kk) for kk in k)))
    positions = list(itertools.product(*(range(o) for o in out)))
    for ki, offset in enumerate(offsets):
        for li, position in enumerate(positions):
            index = tuple(o * st + kk * dl for o, st, kk, dl in zip(position, s, offset, dil))
            padded[(slice(None), slice(None), *index)] += blocks[:, :, ki, li]
    return padded[(..., *(slice(p, p + sz) for p, sz in zip(pad, output_size)))]

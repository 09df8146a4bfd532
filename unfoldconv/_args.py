"""Argument normalisation for every op: the one place that turns user sizes into d-tuples.

Every public function hands its raw arguments to the helpers here, which either return plain
tuples of ints (what the engine sees) or raise a ``ValueError`` / ``TypeError`` naming the
argument, the value received and what was expected. Nothing below this module re-checks.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Union

import torch

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], str]

PADDING_STRINGS = ("valid", "same")


class Geometry(NamedTuple):
    """Everything the engine needs to know about a sliding window, as d-tuples.

    ``padding`` holds ``(before, after)`` per spatial dim, so asymmetric ``"same"`` padding and
    the stride-dilated input of a transposed convolution share one code path. ``flip`` reverses
    the kernel offsets (the layout ``unfold_transpose`` needs).
    """

    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    stride: tuple[int, ...]
    flip: bool = False

    @property
    def dim(self) -> int:
        return len(self.kernel_size)

    @property
    def kernel_numel(self) -> int:
        return math.prod(self.kernel_size)

    def output_size(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """Number of window positions along each spatial dim (torch's conv formula)."""
        return tuple(
            (size + lo + hi - dil * (k - 1) - 1) // s + 1
            for size, (lo, hi), dil, k, s in zip(
                input_size, self.padding, self.dilation, self.kernel_size, self.stride
            )
        )


def _is_int(value: object) -> bool:
    """An int, a NumPy integer or any other ``numbers.Integral``, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def infer_dim(sizes: Mapping[str, object], default: int) -> int:
    """Number of spatial dims ``d``: the common length of every sequence argument, else ``default``.

    Raises ``ValueError`` when sequence arguments disagree in length.
    """
    lengths = {
        name: len(value)
        for name, value in sizes.items()
        if isinstance(value, Sequence) and not isinstance(value, str)
    }
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={tuple(sizes[name])}" for name in lengths)
        raise ValueError(
            f"size arguments must all have the same length d (one entry per spatial dim); got "
            f"{listed}"
        )
    if lengths:
        d = next(iter(lengths.values()))
        if d < 1:
            name = next(iter(lengths))
            raise ValueError(f"{name} must have at least one entry, got {name}={sizes[name]!r}")
        return d
    return default


def input_dim(input: torch.Tensor, sizes: Mapping[str, object]) -> int:
    """``d`` for an unfold-like op: from the sequence sizes, else ``input.dim() - 2`` (>= 1)."""
    d = infer_dim(sizes, default=input.dim() - 2)
    if d < 1:
        raise ValueError(
            f"input must be (N, C, *spatial) with at least one spatial dim when every size is "
            f"an int, got input of shape {tuple(input.shape)}"
        )
    return d


def as_tuple(name: str, value: object, d: int, minimum: int) -> tuple[int, ...]:
    """``value`` (an int or a d-sequence of ints) as a d-tuple, each entry ``>= minimum``."""
    if _is_int(value):
        result = (int(value),) * d
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(_is_int(v) for v in value):
            raise TypeError(f"{name} must be an int or a tuple of ints, got {name}={value!r}")
        if len(value) != d:
            raise ValueError(
                f"{name} must be an int or a tuple of {d} ints (one per spatial dim), "
                f"got {name}={tuple(value)!r}"
            )
        result = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"{name} must be an int or a tuple of ints, got {name}={value!r} "
            f"({type(value).__name__})"
        )
    if any(v < minimum for v in result):
        expected = "positive" if minimum == 1 else f">= {minimum}"
        shown = value if _is_int(value) else result
        raise ValueError(f"{name} must be {expected}, got {name}={shown!r}")
    return result


def resolve_padding(
    padding: Padding,
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` zero padding per dim, for an int, a d-tuple, ``"valid"`` or ``"same"``.

    ``"same"`` follows ``F.conv2d``: total ``dilation * (kernel - 1)`` per dim, the odd element at
    the end; it needs stride 1.
    """
    d = len(kernel_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * d
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"padding='same' needs stride 1 in every dim, got stride={stride}")
            totals = [dil * (k - 1) for dil, k in zip(dilation, kernel_size)]
            return tuple((total // 2, total - total // 2) for total in totals)
        raise ValueError(
            f"padding must be an int, a tuple of ints, 'valid' or 'same', got padding={padding!r}"
        )
    return tuple((p, p) for p in as_tuple("padding", padding, d, minimum=0))


def make_geometry(
    d: int,
    kernel_size: IntOrTuple,
    dilation: IntOrTuple,
    padding: Padding,
    stride: IntOrTuple,
    flip: bool = False,
) -> Geometry:
    """Check and normalise the four window arguments for ``d`` spatial dims."""
    kernel = as_tuple("kernel_size", kernel_size, d, minimum=1)
    dil = as_tuple("dilation", dilation, d, minimum=1)
    step = as_tuple("stride", stride, d, minimum=1)
    pad = resolve_padding(padding, kernel, dil, step)
    return Geometry(kernel, dil, pad, step, flip)


def check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_input_dims(input: torch.Tensor, d: int, name: str = "input") -> bool:
    """Whether ``input`` is batched ``(N, C, *spatial)``; unbatched is ``(C, *spatial)``."""
    if input.dim() == d + 2:
        return True
    if input.dim() == d + 1:
        return False
    raise ValueError(
        f"{name} must be (N, C, *spatial) or (C, *spatial) with {d} spatial dim(s) "
        f"(d is taken from the size arguments), got {name} of shape {tuple(input.shape)}"
    )


def check_window_fits(input_size: Sequence[int], geometry: Geometry, name: str = "input") -> None:
    """Raise unless the dilated kernel fits into the padded input in every dim."""
    for axis, (size, (lo, hi), dil, k) in enumerate(
        zip(input_size, geometry.padding, geometry.dilation, geometry.kernel_size)
    ):
        span = dil * (k - 1) + 1
        if span > size + lo + hi:
            raise ValueError(
                f"kernel_size={geometry.kernel_size} with dilation={geometry.dilation} spans "
                f"{span} along spatial dim {axis}, more than the padded {name} size "
                f"{size + lo + hi} ({name} {size} + padding {lo + hi}); {name} spatial size is "
                f"{tuple(input_size)}"
            )


def check_dtype(input: torch.Tensor, op: str, allow_bool: bool) -> None:
    if input.dtype == torch.bool and not allow_bool:
        raise TypeError(
            f"{op} sums overlapping blocks, so input must be a floating, complex or integer "
            f"tensor, got dtype={input.dtype}"
        )


def transpose_output_size(
    input_size: Sequence[int],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """Spatial size of a transposed convolution's output; raises if any entry is not positive."""
    for op, s, dil in zip(output_padding, stride, dilation):
        if op >= max(s, dil):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation in every dim, got "
                f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
            )
    sizes = tuple(
        (size - 1) * s - 2 * p + dil * (k - 1) + op + 1
        for size, k, s, p, op, dil in zip(
            input_size, kernel_size, stride, padding, output_padding, dilation
        )
    )
    if any(size < 1 for size in sizes):
        raise ValueError(
            f"a transposed convolution of input spatial size {tuple(input_size)} with "
            f"kernel_size={kernel_size}, stride={stride}, padding={padding}, "
            f"output_padding={output_padding}, dilation={dilation} has output size {sizes}; "
            f"every entry must be positive (padding too large?)"
        )
    return sizes


def output_padding_for(
    input_size: Sequence[int],
    output_size: Sequence[int],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """The ``output_padding`` that makes a transposed convolution produce ``output_size``.

    ``output_size`` may also carry the leading ``(N, C)`` dims, as for ``nn.ConvTranspose2d``.
    """
    d = len(kernel_size)
    requested = [int(v) for v in output_size]
    if len(requested) in (d + 1, d + 2):  # with the (C,) or (N, C) dims, as torch allows
        requested = requested[-d:]
    if len(requested) != d:
        raise ValueError(
            f"output_size must have {d}, {d + 1} or {d + 2} entries, got output_size="
            f"{tuple(output_size)}"
        )
    padding_out = []
    for axis, (size, want, k, s, p, dil) in enumerate(
        zip(input_size, requested, kernel_size, stride, padding, dilation)
    ):
        smallest = (size - 1) * s - 2 * p + dil * (k - 1) + 1
        largest = smallest + s - 1
        if not smallest <= want <= largest:
            raise ValueError(
                f"output_size={tuple(output_size)} cannot be reached: spatial dim {axis} can be "
                f"between {smallest} and {largest} for an input of spatial size "
                f"{tuple(input_size)}, got {want}"
            )
        padding_out.append(want - smallest)
    return tuple(padding_out)

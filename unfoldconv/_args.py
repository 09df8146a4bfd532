"""Argument checks: the one module that writes an argument error.

Every public function and every layer constructor hands its raw arguments to the helpers here,
which either return plain ints / tuples of ints (what the engine sees) or raise. The wording is
the same everywhere: a wrong *type* is a ``TypeError``, a wrong *value* a ``ValueError``, and the
message reads ``"<name> must be <what was expected>, got <name>=<value received>"``. Integers
are anything ``numbers.Integral`` but ``bool`` (so NumPy integers work, as in torch).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Union

import torch

from unfoldconv._geometry import Geometry, transposed_output_size, transposed_size_range

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], str]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def is_int(value: object) -> bool:
    """An int, a NumPy integer or any other ``numbers.Integral``, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bound(minimum: int) -> str:
    return "positive" if minimum == 1 else f">= {minimum}"


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; ``TypeError`` if it is no integer."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {name}={value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be {_bound(minimum)}, got {name}={value!r}")
    return int(value)


def check_optional_int(name: str, value: object, minimum: int = 1) -> int | None:
    """``None`` or :func:`check_int`."""
    if value is None:
        return None
    if not is_int(value):
        raise TypeError(
            f"{name} must be an int or None, got {name}={value!r} ({type(value).__name__})"
        )
    return check_int(name, value, minimum)


def check_bool(name: str, value: object) -> bool:
    """``value`` as a bool (``bool`` or NumPy's ``bool_``); ``TypeError`` for anything else."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(f"{name} must be a bool, got {name}={value!r} ({type(value).__name__})")
    return bool(value)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {name}={value!r}")
    return value


def check_tensor(name: str, value: object) -> torch.Tensor:
    """``value`` if it is a tensor."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


# -- sizes ---------------------------------------------------------------------------------------


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


def layer_dim(
    sizes: Mapping[str, object], dim: object, owner: str, default: int | None = None
) -> int:
    """``d`` of a layer: from the tuple sizes, else ``dim``, else ``default``; sizes and ``dim``
    must agree when both are given."""
    dim = check_optional_int("dim", dim)
    fallback = dim if dim is not None else default
    d = infer_dim(sizes, default=fallback if fallback is not None else 0)
    listed = ", ".join(f"{name}={value!r}" for name, value in sizes.items())
    if d == 0:
        raise ValueError(
            f"{owner} needs dim (the number of spatial dims) when every size argument is an "
            f"int, got dim=None with {listed}"
        )
    if dim is not None and d != dim:
        raise ValueError(f"size arguments of length {d} do not match dim={dim} ({listed})")
    return d


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
    if is_int(value):
        result = (int(value),) * d
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(is_int(v) for v in value):
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
        shown = value if is_int(value) else result
        raise ValueError(f"{name} must be {_bound(minimum)}, got {name}={shown!r}")
    return result


def same_with_stride_message(
    kernel_size: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]
) -> str:
    """The error for ``padding="same"`` with a stride: it names the explicit padding that gives
    ``ceil(size / stride)`` outputs per dim (TensorFlow's ``"SAME"``) instead."""
    spans = [dil * (k - 1) for dil, k in zip(dilation, kernel_size)]
    padding = tuple(span // 2 for span in spans)
    message = (
        f"padding='same' needs stride 1 in every dim, got stride={stride}; for ceil(size / "
        f"stride) outputs per dim give padding={padding} (dilation * (kernel_size - 1) // 2)"
    )
    if any(span % 2 for span in spans):
        message += (
            ", exact in the dims where dilation * (kernel_size - 1) is even; in the others pad "
            "one more at the end first (F.pad)"
        )
    return message


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
                raise ValueError(same_with_stride_message(kernel_size, dilation, stride))
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


def check_transposed_padding(padding: object) -> None:
    """A transposed op takes int / tuple padding only: ``"same"`` / ``"valid"`` are refused."""
    if isinstance(padding, str):
        raise TypeError(
            f"padding must be an int or a tuple of ints for a transposed op ('same' and 'valid' "
            f"are for convolutions), got padding={padding!r}"
        )


def transposed_arguments(
    d: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    dilation: IntOrTuple,
) -> tuple[tuple[int, ...], ...]:
    """``(kernel_size, stride, padding, output_padding, dilation)`` of a transposed op as d-tuples.

    ``output_padding`` must be smaller than stride or dilation in every dim (as torch).
    """
    check_transposed_padding(padding)
    kernel = as_tuple("kernel_size", kernel_size, d, minimum=1)
    step = as_tuple("stride", stride, d, minimum=1)
    pad = as_tuple("padding", padding, d, minimum=0)
    out_pad = as_tuple("output_padding", output_padding, d, minimum=0)
    dil = as_tuple("dilation", dilation, d, minimum=1)
    for op, s, dl in zip(out_pad, step, dil):
        if op >= max(s, dl):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation in every dim, got "
                f"output_padding={out_pad}, stride={step}, dilation={dil}"
            )
    return kernel, step, pad, out_pad, dil


def checked_transposed_output_size(
    input_size: Sequence[int],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """:func:`~unfoldconv._geometry.transposed_output_size`, refused if any entry is < 1."""
    sizes = transposed_output_size(
        input_size, kernel_size, stride, padding, output_padding, dilation
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

    ``output_size`` may also carry the leading ``(N, C)`` or ``(C,)`` dims, as torch allows.
    """
    d = len(kernel_size)
    requested = [int(v) for v in output_size]
    if len(requested) in (d + 1, d + 2):
        requested = requested[-d:]
    if len(requested) != d:
        raise ValueError(
            f"output_size must have {d}, {d + 1} or {d + 2} entries, got output_size="
            f"{tuple(output_size)}"
        )
    ranges = transposed_size_range(input_size, kernel_size, stride, padding, dilation)
    for axis, (want, (smallest, largest)) in enumerate(zip(requested, ranges)):
        if not smallest <= want <= largest:
            raise ValueError(
                f"output_size={tuple(output_size)} cannot be reached: spatial dim {axis} can be "
                f"between {smallest} and {largest} for an input of spatial size "
                f"{tuple(input_size)}, got {want}"
            )
    return tuple(want - smallest for want, (smallest, _) in zip(requested, ranges))


# -- tensors -------------------------------------------------------------------------------------


def plural(count: int, noun: str) -> str:
    """``"1 spatial dim"``, ``"2 spatial dims"``: ``count`` and ``noun``, plural unless 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def dim_source(sizes: Mapping[str, object], d: int, rule: str) -> str:
    """How ``d`` was found, for an error message: the tuple size argument that set it, else
    ``rule`` (what all-int sizes mean, e.g. ``"d = 2, as F.fold"``).

    Example:
        >>> dim_source({"kernel_size": 3, "padding": (1, 1, 2, 2)}, 4, "d = input.dim() - 2 = 2")
        "padding=(1, 1, 2, 2) sets d = 4 (padding is one value per spatial dim, not F.pad's order)"
    """
    for name, value in sizes.items():
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == d:
            source = f"{name}={tuple(value)!r} sets d = {d}"
            if name == "padding":
                source += " (padding is one value per spatial dim, not F.pad's order)"
            return source
    return f"every size argument is an int, so {rule}"


def check_input_dims(
    input: torch.Tensor,
    d: int,
    name: str = "input",
    sizes: Mapping[str, object] | None = None,
    rule: str = "d = input.dim() - 2",
) -> bool:
    """Whether ``input`` is batched ``(N, C, *spatial)``; unbatched is ``(C, *spatial)``.

    With ``sizes`` (the raw size arguments of an unfold-like op) the error says which of them
    set ``d`` (:func:`dim_source`; ``rule`` is what all-int sizes mean); without, ``d`` is the
    weight's (every other caller carries one).
    """
    if input.dim() == d + 2:
        return True
    if input.dim() == d + 1:
        return False
    if sizes is None:
        source = f"d = {d}, the number of spatial dims of the layer's or op's weight"
    else:
        source = dim_source(sizes, d, rule)
    raise ValueError(
        f"{name} must be (N, C, *spatial) or (C, *spatial) with {plural(d, 'spatial dim')} "
        f"({source}), got {name} of shape {tuple(input.shape)}"
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


def check_weight_dim(weight: torch.Tensor, d: int, dims: int, layout: str, rule: str) -> None:
    """``weight`` must have ``dims`` dims, the ``layout`` for ``d`` spatial dims."""
    if weight.dim() != dims or d < 1:
        raise ValueError(
            f"weight must be {layout} with {plural(max(d, 1), 'spatial dim')} (d is the length "
            f"of the tuple size arguments, else {rule}), got weight of shape "
            f"{tuple(weight.shape)}"
        )


# -- channels, groups, bias ------------------------------------------------------------------------


def check_divisible(name: str, value: int, groups: int) -> None:
    """``value`` (a channel count called ``name``) must be divisible by ``groups``."""
    if value % groups != 0:
        raise ValueError(f"{name} must be divisible by groups={groups}, got {name}={value}")


def check_input_channels(channels: int, expected: int, how: str) -> None:
    """The input's channel count must be ``expected`` (``how`` says where it comes from)."""
    if channels != expected:
        raise ValueError(
            f"input must have {plural(expected, 'channel')} ({how}), got input with "
            f"{plural(channels, 'channel')}"
        )


def check_bias(bias: object, shape: Sequence[int]) -> None:
    """``bias`` must be ``None`` or a tensor of ``shape``."""
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if tuple(bias.shape) != tuple(shape):
        raise ValueError(
            f"bias must have shape {tuple(shape)}, got bias of shape {tuple(bias.shape)}"
        )


def check_same_kind(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """input, weight and bias must share dtype and device (torch's convs demand it too)."""
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is None:
            continue
        if tensor.dtype != input.dtype:
            raise TypeError(
                f"{name} must have the input's dtype {input.dtype}, got {name} of dtype "
                f"{tensor.dtype}"
            )
        if tensor.device != input.device:
            raise ValueError(
                f"{name} must be on the input's device {input.device}, got {name} on "
                f"{tensor.device}"
            )


def check_channels(in_channels: object, out_channels: object, groups: object) -> tuple[int, ...]:
    """``(in_channels, out_channels, groups)`` of a layer, each positive, channels divisible."""
    groups = check_int("groups", groups)
    in_channels = check_int("in_channels", in_channels)
    out_channels = check_int("out_channels", out_channels)
    check_divisible("in_channels", in_channels, groups)
    check_divisible("out_channels", out_channels, groups)
    return in_channels, out_channels, groups


def check_padding_mode(padding_mode: object, transposed: bool = False) -> str:
    """One of :data:`PADDING_MODES`; only ``"zeros"`` for a transposed op (as torch)."""
    if transposed and padding_mode != "zeros":
        raise ValueError(
            f"padding_mode must be 'zeros' for a transposed convolution (as torch), got "
            f"padding_mode={padding_mode!r}"
        )
    return check_choice("padding_mode", padding_mode, PADDING_MODES)


def check_workspace_bytes(num_bytes: object) -> int | None:
    """``None`` or a positive int: the column workspace of one batch chunk in bytes."""
    return check_optional_int("workspace_bytes", num_bytes)

"""Argument checks and padding shared by the functional layers and their modules.

The engine's ``_args`` turns sizes into d-tuples; this module adds what only weight-carrying ops
need: ``groups``, channel counts against the weight, the bias shape, matching dtypes and devices,
and non-zero ``padding_mode`` padding for any number of spatial dims. Every check raises a
``ValueError`` / ``TypeError`` naming the argument, the value received and what was expected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_groups(groups: object) -> int:
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"groups must be a positive int, got groups={groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be a positive int, got groups={groups}")
    return groups


def check_divisible(name: str, value: int, groups: int) -> None:
    if value % groups != 0:
        raise ValueError(f"{name} must be divisible by groups={groups}, got {name}={value}")


def check_weight_dims(weight: torch.Tensor, dims: int, layout: str, d_source: str) -> None:
    if weight.dim() != dims:
        raise ValueError(
            f"weight must be {layout} ({dims} dims, {d_source}), got weight of shape "
            f"{tuple(weight.shape)}"
        )


def check_input_channels(channels: int, expected: int, how: str) -> None:
    if channels != expected:
        raise ValueError(
            f"input must have {expected} channels ({how}), got input with {channels} channels"
        )


def check_bias(bias: torch.Tensor | None, shape: Sequence[int]) -> None:
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if tuple(bias.shape) != tuple(shape):
        raise ValueError(
            f"bias must have shape {tuple(shape)}, got bias of shape {tuple(bias.shape)}"
        )


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device_type argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()


def _autocast_dtype(device_type: str) -> torch.dtype:
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype()
        return torch.get_autocast_gpu_dtype()


def follows_autocast(function: Callable) -> Callable:
    """Make a ``(input, weight, bias, ...)`` op behave like torch's convs under autocast.

    Inside ``torch.autocast``, torch's convolutions cast floating inputs (not float64) to the
    autocast dtype and compute in it. This wrapper does the same cast, then runs ``function``
    with autocast off, so the engine and its matmuls see one dtype throughout.
    """

    @functools.wraps(function)
    def wrapper(input, weight, bias=None, *args, **kwargs):
        if not isinstance(input, torch.Tensor) or not _autocast_enabled(input.device.type):
            return function(input, weight, bias, *args, **kwargs)
        dtype = _autocast_dtype(input.device.type)

        def cast(tensor):
            eligible = (
                isinstance(tensor, torch.Tensor)
                and tensor.is_floating_point()
                and tensor.dtype != torch.float64
            )
            return tensor.to(dtype) if eligible else tensor

        with torch.autocast(input.device.type, enabled=False):
            return function(cast(input), cast(weight), cast(bias), *args, **kwargs)

    return wrapper


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


def check_padding_mode(padding_mode: object) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}"
        )
    return padding_mode


def _source_indices(size: int, before: int, after: int, mode: str) -> list[int]:
    """For each position of the padded axis, the input index it copies (``mode`` != zeros)."""
    if mode == "reflect" and max(before, after) >= size:
        raise ValueError(
            f"padding_mode='reflect' needs padding smaller than the input size, got padding "
            f"({before}, {after}) for a spatial dim of size {size}"
        )
    if mode == "circular" and max(before, after) > size:
        raise ValueError(
            f"padding_mode='circular' needs padding at most the input size, got padding "
            f"({before}, {after}) for a spatial dim of size {size}"
        )
    indices = []
    for position in range(-before, size + after):
        if mode == "replicate":
            indices.append(min(max(position, 0), size - 1))
        elif mode == "circular":
            indices.append(position % size)
        else:  # reflect (edge not repeated)
            reflected = -position if position < 0 else position
            indices.append(2 * (size - 1) - reflected if reflected >= size else reflected)
    return indices


def pad_by_mode(input: torch.Tensor, padding: Sequence[tuple[int, int]], mode: str) -> torch.Tensor:
    """Pad the last ``len(padding)`` dims of ``input`` by ``(before, after)`` as ``mode`` says.

    Works for any number of spatial dims (``F.pad`` stops at 3 for these modes) and gives the
    values ``F.pad`` gives: every padded element is a copy of one input element, chosen by an
    index per axis, so gradients flow back through ``index_select``.
    """
    d = len(padding)
    for axis, (before, after) in enumerate(padding):
        if before == 0 and after == 0:
            continue
        dim = input.dim() - d + axis
        indices = _source_indices(input.shape[dim], before, after, mode)
        index = torch.tensor(indices, dtype=torch.long, device=input.device)
        input = input.index_select(dim, index)
    return input

"""``follows_autocast``: weight-carrying ops cast their inputs as torch's convs do."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Floating tensors other than float64 in ``dtype`` (torch's rule for convs), others as is."""
    eligible = (
        isinstance(tensor, torch.Tensor)
        and tensor.is_floating_point()
        and tensor.dtype != torch.float64
    )
    return tensor.to(dtype) if eligible else tensor


def follows_autocast(function: Callable) -> Callable:
    """Make a ``(input, weight, bias, ...)`` op behave like torch's convs under autocast.

    Inside ``torch.autocast``, torch's convolutions cast floating inputs (not float64) to the
    autocast dtype and compute in it. This wrapper does the same cast, then runs ``function``
    with autocast off, so the engine and its matmuls see one dtype throughout.
    """

    @functools.wraps(function)
    def wrapper(input, weight, bias=None, *args, **kwargs):
        if not isinstance(input, torch.Tensor) or not torch.is_autocast_enabled(input.device.type):
            return function(input, weight, bias, *args, **kwargs)
        device_type = input.device.type
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return function(
                _cast(input, dtype), _cast(weight, dtype), _cast(bias, dtype), *args, **kwargs
            )

    return wrapper

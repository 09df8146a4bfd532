"""``convert``: swap every conv layer of a model between torch's and ours, weights kept."""

from __future__ import annotations

from torch import nn

from unfoldconv.layers.conv import Conv1d, Conv2d, Conv3d, ConvNd
from unfoldconv.layers.conv_transpose import (
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    ConvTransposeNd,
)

#: torch class -> our class
TWINS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: Conv1d,
    nn.Conv2d: Conv2d,
    nn.Conv3d: Conv3d,
    nn.ConvTranspose1d: ConvTranspose1d,
    nn.ConvTranspose2d: ConvTranspose2d,
    nn.ConvTranspose3d: ConvTranspose3d,
}
TARGETS = ("unfold", "native")


def _converted(module: nn.Module, to: str) -> nn.Module | None:
    if to == "unfold" and type(module) in TWINS:  # exact type: nn.LazyConv2d etc. stay
        return TWINS[type(module)].from_native(module)
    if to == "native" and isinstance(module, (ConvNd, ConvTransposeNd)) and module.dim <= 3:
        return module.to_native()
    return None


def convert(model: nn.Module, to: str = "unfold") -> nn.Module:
    """Replace every conv layer of ``model`` (recursively) by its twin; returns the model.

    ``to="unfold"``: ``nn.Conv1d/2d/3d`` and ``nn.ConvTranspose1d/2d/3d`` become
    :mod:`unfoldconv.layers` layers; ``to="native"``: ours (d <= 3) become torch's. Parameters
    are shared, not copied (an optimizer built on the model keeps working); the model is changed
    in place, and returned (a conv layer passed as ``model`` is returned converted).

    Example:
        >>> import torch
        >>> model = convert(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()))
        >>> type(model[0]).__module__
        'unfoldconv.layers.conv'
    """
    if to not in TARGETS:
        raise ValueError(f"to must be one of {TARGETS}, got to={to!r}")
    replacement = _converted(model, to)
    if replacement is not None:
        return replacement
    for name, child in model.named_children():
        setattr(model, name, convert(child, to))
    return model

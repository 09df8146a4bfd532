"""``convert``: swap every conv layer of a model between torch's and ours, weights kept."""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn.parameter import UninitializedParameter
from torch.nn.utils import parametrize

from unfoldconv._args import check_bool, check_choice
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
#: our classes that ``to="native"`` converts (exact types: a user's subclass may compute more)
OURS = (*TWINS.values(), ConvNd, ConvTransposeNd)
TARGETS = ("unfold", "native")

#: the per-module hook dicts of ``nn.Module`` (those this torch has are carried over)
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_is_full_backward_hook",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def _why_left(module: nn.Module, base: type[nn.Module]) -> str | None:
    """Why ``module``, an instance of the conv class ``base``, cannot be converted (or None)."""
    kind = type(module)
    if any(isinstance(p, UninitializedParameter) for p in module.parameters(recurse=False)):
        return f"{kind.__name__}: lazy, not yet materialised (run one forward first)"
    if parametrize.is_parametrized(module):  # its class is swapped for a generated subclass
        return f"{kind.__name__}: parametrized (torch.nn.utils.parametrize)"
    if set(module._parameters) != {"weight", "bias"} or module._buffers or module._modules:
        extra = sorted({*module._parameters, *module._buffers, *module._modules} - {"weight"})
        return f"{kind.__name__}: has parameters, buffers or submodules of its own ({extra})"
    if kind not in TWINS and kind not in OURS:
        own = [name for name in ("forward", "_conv_forward") if name in vars(kind)]
        what = f"its own {' / '.join(own)}" if own else "a class of its own"
        return f"{kind.__name__}: a subclass of {base.__name__} with {what}"
    return None


def _converted(module: nn.Module, to: str) -> nn.Module | str | None:
    """The twin of ``module``; a str saying why a conv layer stays; ``None`` for other modules."""
    if to == "unfold":
        if isinstance(module, (ConvNd, ConvTransposeNd)):
            return None  # ours already
        base = next((c for c in TWINS if isinstance(module, c)), None)
        if base is None:
            return None
        reason = _why_left(module, base)
        return reason if reason is not None else TWINS[type(module)].from_native(module)
    if not isinstance(module, (ConvNd, ConvTransposeNd)):
        return None
    base = ConvNd if isinstance(module, ConvNd) else ConvTransposeNd
    reason = _why_left(module, base)
    if reason is not None:
        return reason
    if module.dim not in module.native_classes:
        return f"{type(module).__name__}: d = {module.dim}, and torch has no such layer"
    return module.to_native()


def _carry_state(source: nn.Module, target: nn.Module) -> nn.Module:
    """``training`` and every hook dict of ``source`` onto ``target``.

    The dicts are shared, not copied: a handle returned by ``register_*_hook`` on the original
    layer still removes the hook from the converted one.
    """
    target.train(source.training)
    for name in HOOK_DICTS:
        if hasattr(source, name):
            setattr(target, name, getattr(source, name))
    return target


def convert(model: nn.Module, to: str = "unfold", *, strict: bool = False) -> nn.Module:
    """Replace every conv layer of ``model`` (recursively) by its twin; returns the model.

    ``to="unfold"``: ``nn.Conv1d/2d/3d`` and ``nn.ConvTranspose1d/2d/3d`` become
    :mod:`unfoldconv.layers` layers; ``to="native"``: ours (d <= 3) become torch's. The model is
    changed in place and returned (a conv layer passed as ``model`` is returned converted).

    What is kept: the ``Parameter`` objects themselves (shared, not copied: an optimizer built
    on the model, tied weights and ``requires_grad`` keep working); ``training``; every hook
    (forward, forward pre, backward, backward pre, state-dict hooks; their handles still
    remove them). A layer used in several places is converted once, and every place gets the
    same converted layer.

    What is left alone, named in one warning (or refused with ``strict=True``): subclasses of
    torch's conv classes (they may compute something else, e.g. with their own ``forward``),
    lazy layers not yet materialised, parametrized layers and layers with parameters, buffers
    or submodules of their own (e.g. the old ``weight_norm``), and with ``to="native"`` our
    layers of a ``d`` torch has no layer for.

    Args:
        model: any ``nn.Module``.
        to: ``"unfold"`` (to :mod:`unfoldconv.layers`) or ``"native"`` (to ``torch.nn``).
        strict: raise a ``ValueError`` instead of warning when a conv layer cannot be
            converted; the model is then left unchanged.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        >>> model = convert(torch.nn.Sequential(conv, torch.nn.ReLU(), conv).eval())
        >>> type(model[0]).__module__, model[0] is model[2], model[0].training
        ('unfoldconv.layers.conv', True, False)
        >>> model[0].weight is conv.weight
        True
    """
    to = check_choice("to", to, TARGETS)
    strict = check_bool("strict", strict)
    replacements: dict[int, nn.Module] = {}  # id(original) -> its twin
    left: dict[int, str] = {}  # id(original) -> "'name' (why)"
    seen: set[int] = set()

    def plan(module: nn.Module, name: str) -> None:
        if id(module) in seen:  # shared: planned at its first place
            return
        seen.add(id(module))
        outcome = _converted(module, to)
        if isinstance(outcome, nn.Module):
            replacements[id(module)] = _carry_state(module, outcome)
        elif isinstance(outcome, str):
            left[id(module)] = f"{name or '<model>'!r} ({outcome})"
        else:
            for child_name, child in module._modules.items():
                if child is not None:
                    plan(child, f"{name}.{child_name}" if name else child_name)

    plan(model, "")
    if left:
        listed = "; ".join(left.values())
        message = (
            f"convert(to={to!r}) left {len(left)} conv layer{'s' if len(left) > 1 else ''} "
            f"as {'they are' if len(left) > 1 else 'it is'}: {listed}"
        )
        if strict:
            raise ValueError(f"{message}; the model is unchanged (strict=True)")
        warnings.warn(f"{message}; pass strict=True to make this an error", stacklevel=2)
    if id(model) in replacements:
        return replacements[id(model)]
    done: set[int] = set()

    def attach(module: nn.Module) -> None:
        if id(module) in done:
            return
        done.add(id(module))
        for child_name, child in module._modules.items():
            if child is None:
                continue
            if id(child) in replacements:
                module._modules[child_name] = replacements[id(child)]
            else:
                attach(child)

    attach(model)
    return model

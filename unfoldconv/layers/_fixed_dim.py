"""``fixed_dim``: give a ``Conv2d``-like class its own constructor (signature, name, doc).

The 1d/2d/3d classes share one constructor, the ``*Nd`` one without ``dim``. Inherited as it
is, Python would name the shared base in a ``TypeError`` (``_FixedDimLocallyConnected.__init__()
missing 1 required positional argument``) and ``help()`` would show torch's generic text; each
class gets a copy of the function under its own name instead.
"""

from __future__ import annotations

import types
from typing import TypeVar

Class = TypeVar("Class", bound=type)


def fixed_dim(dim: int, nd_class: str):
    """Class decorator: ``fixed_dim = dim`` and an own copy of the inherited ``__init__``."""

    def decorate(cls: Class) -> Class:
        shared = cls.__init__
        init = types.FunctionType(
            shared.__code__, shared.__globals__, "__init__", shared.__defaults__, shared.__closure__
        )
        init.__kwdefaults__ = shared.__kwdefaults__
        init.__annotations__ = dict(shared.__annotations__)
        init.__qualname__ = f"{cls.__name__}.__init__"
        init.__module__ = cls.__module__
        init.__doc__ = (
            f"Build a {cls.__name__}: the arguments of :class:`{nd_class}` without ``dim`` "
            f"(``d = {dim}``); see ``help({nd_class})``."
        )
        cls.__init__ = init
        cls.fixed_dim = dim
        return cls

    return decorate

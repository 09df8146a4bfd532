"""Argument checks of the experiments: one wording for every error they raise."""

from __future__ import annotations


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise unless ``value`` is an int ``>= minimum`` (bools refused).

    ``TypeError`` for a value that is not an int, ``ValueError`` for one below ``minimum``;
    both messages name ``name`` and the value received.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")

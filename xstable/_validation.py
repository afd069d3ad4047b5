"""Argument checks shared by every xstable component: type and range, as Keras reports them.

Each check names the argument in backticks, says what it must be and echoes
`Received: argument=value`; a wrong type raises `TypeError`, a wrong value `ValueError`.
"""

import math

import numpy as np

__all__ = ["check_bool", "check_int", "check_name", "check_number", "check_one_of"]


def _type_name(value):
    return type(value).__name__


def _is_number(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (int, float, np.integer, np.floating)
    )


def check_bool(argument, value):
    """Returns `value` as a Python bool; raises `TypeError` for anything but a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{argument}` must be a bool (True or False). "
            f"Received: {argument}={value!r} of type {_type_name(value)}."
        )
    return bool(value)


def check_int(argument, value, low=None, allow_none=False):
    """Returns `value` as a Python int, checked to be an int (not a bool) `>= low`."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = "an int or None" if allow_none else "an int"
        raise TypeError(
            f"`{argument}` must be {kind}. "
            f"Received: {argument}={value!r} of type {_type_name(value)}."
        )
    if low is not None and value < low:
        raise ValueError(f"`{argument}` must be >= {low}. Received: {argument}={value!r}.")
    return int(value)


def check_number(
    argument,
    value,
    low=None,
    high=None,
    low_inclusive=True,
    high_inclusive=True,
    allow_none=False,
    meaning="",
):
    """Returns `value` as a float after checking it is a finite real number in range.

    Args:
        argument: String, the argument's name for the message.
        value: The value received.
        low, high: Bounds, or `None` for unbounded.
        low_inclusive, high_inclusive: Bools, whether the bounds belong to the range.
        allow_none: Bool, whether `None` is accepted (and returned).
        meaning: String appended to the requirement, e.g. `" (the clipping norm)"`.
    """
    if value is None and allow_none:
        return None
    if not _is_number(value):
        kind = "a Python number or None" if allow_none else "a Python number"
        raise TypeError(
            f"`{argument}` must be {kind}{meaning}. "
            f"Received: {argument}={value!r} of type {_type_name(value)}."
        )
    value = float(value)
    above = low is None or (value >= low if low_inclusive else value > low)
    below = high is None or (value <= high if high_inclusive else value < high)
    if not (math.isfinite(value) and above and below):
        opening = "[" if low_inclusive and low is not None else "("
        closing = "]" if high_inclusive and high is not None else ")"
        interval = (
            f"{opening}{'-inf' if low is None else low}, {'inf' if high is None else high}{closing}"
        )
        raise ValueError(
            f"`{argument}` must be a finite number in {interval}{meaning}. "
            f"Received: {argument}={value!r}."
        )
    return value


def check_one_of(argument, value, allowed, meaning=""):
    """Returns `value` after checking it is one of the strings in `allowed`."""
    listed = ", ".join(map(repr, allowed))
    if not isinstance(value, str):
        raise TypeError(
            f"`{argument}` must be a string, one of {listed}. "
            f"Received: {argument}={value!r} of type {_type_name(value)}."
        )
    if value not in allowed:
        raise ValueError(
            f"`{argument}` must be one of {listed}{meaning}. Received: {argument}={value!r}."
        )
    return value


def check_name(argument, value):
    """Returns `value` after checking it is a string or `None`."""
    if value is not None and not isinstance(value, str):
        raise TypeError(
            f"`{argument}` must be a string or None. "
            f"Received: {argument}={value!r} of type {_type_name(value)}."
        )
    return value

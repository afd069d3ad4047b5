"""Argument checks of the safe numerics: type and range, checked before any computation."""

import math

import numpy as np


def _is_number(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (int, float, np.integer, np.floating)
    )


def check_number(argument, value, low=None, high=None, meaning=""):
    """Returns `value` as a float after checking it is a finite Python number in range.

    `low` and `high` are inclusive bounds (`None`: unbounded). Raises `TypeError` for a
    non-number and `ValueError` for NaN, infinity or a value out of range.
    """
    if not _is_number(value):
        raise TypeError(
            f"`{argument}` must be a Python number{meaning}. "
            f"Received: {argument}={value!r} of type {type(value).__name__}"
        )
    value = float(value)
    in_range = (
        math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    )
    if not in_range:
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(
            f"`{argument}` must be a finite number in {bounds}{meaning}. "
            f"Received: {argument}={value!r}"
        )
    return value


def check_keepdims(keepdims):
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(
            f"`keepdims` must be a bool. Received: keepdims={keepdims!r} of type "
            f"{type(keepdims).__name__}"
        )
    return bool(keepdims)


def check_axis(axis):
    """`axis` must be `None`, an int or a tuple/list of ints."""
    items = axis if isinstance(axis, (tuple, list)) else [axis]
    if axis is not None and not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_)) for a in items
    ):
        raise TypeError(f"`axis` must be None, an int or a tuple of ints. Received: axis={axis!r}")
    return tuple(axis) if isinstance(axis, list) else axis

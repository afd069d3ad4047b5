"""Argument checks of the safe numerics, on top of xstable's shared checks."""

import numpy as np

from xstable import _validation

__all__ = ["check_axis", "check_keepdims", "check_number"]


def check_number(argument, value, low=None, high=None, meaning=""):
    """Returns `value` as a finite float in `[low, high]` (`None`: unbounded)."""
    return _validation.check_number(argument, value, low, high, meaning=meaning)


def check_keepdims(keepdims):
    return _validation.check_bool("keepdims", keepdims)


def check_axis(axis):
    """`axis` must be `None`, an int or a tuple/list of ints."""
    items = axis if isinstance(axis, (tuple, list)) else [axis]
    if axis is not None and not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_)) for a in items
    ):
        raise TypeError(f"`axis` must be None, an int or a tuple of ints. Received: axis={axis!r}")
    return tuple(axis) if isinstance(axis, list) else axis

"""`safe_log`: the logarithm with a floor, finite in value and gradient for every finite input."""

import math

from keras import ops

from xstable.numerics import _checks, _limits

__all__ = ["safe_log"]


def safe_log(x, floor=None):
    """Natural logarithm that never returns `-inf`/NaN and never has an infinite gradient.

    Inputs at or below `floor` (including 0, negative numbers and subnormals) are treated as
    `floor`: the value is `log(floor)` and the gradient there is 0. Above the floor the value
    and gradient are those of `log`. The singular input is replaced *before* the log and the
    result selected afterwards (the "double where"), so the unused branch cannot send NaN or
    inf into the gradient.

    Args:
        x: Tensor, float.
        floor: Python float or `None`. Smallest input taken at face value, between the
            smallest positive normal number and the largest finite number of the dtype.
            Defaults to the smallest positive normal number (`1.18e-38` in float32), below
            which some backends flush subnormals to 0.

    Returns:
        Tensor of the dtype of `x`: `log(max(x, floor))`. `+inf` gives `+inf` and NaN gives
        NaN: non-finite inputs are reported, not hidden.

    Raises:
        TypeError: if `floor` is not a Python number.
        ValueError: if `floor` is not finite or outside the dtype's normal range, on every
            backend.

    Example:

    >>> safe_log(keras.ops.array([0.0, 1.0]))  # [-87.34, 0.0] in float32
    """
    x = ops.convert_to_tensor(x)
    dtype = _limits.float_dtype(x)
    x = ops.cast(x, dtype)
    if floor is None:
        floor = _limits.tiny(dtype)
    else:
        floor = _checks.check_number(
            "floor",
            floor,
            low=_limits.tiny(dtype),
            high=_limits.max_value(dtype),
            meaning=f" (the smallest input taken at face value, representable in {dtype})",
        )
    above = ops.greater(x, floor)
    x_safe = ops.where(above, x, ops.ones_like(x))
    result = ops.where(above, ops.log(x_safe), ops.full_like(x, math.log(floor)))
    # NaN compares false and would land on the floor: keep it visible instead.
    return ops.where(ops.isnan(x), x, result)

"""`safe_exp`: the exponential without overflow."""

import math

from keras import ops

from xstable.numerics import _checks, _limits

__all__ = ["safe_exp"]


def safe_exp(x, max_value=None):
    """Exponential that saturates at a finite value instead of overflowing to `inf`.

    `exp(x)` overflows for `x > 88.72` in float32 (`11.09` in float16) and its gradient then
    overflows too. Here `x` is capped at `log(max_value)`, a few ulps below the overflow point
    by default; above the cap the value is the saturated value and the gradient is 0.

    Args:
        x: Tensor, float.
        max_value: Positive float or `None`. The largest value returned. Defaults to (almost)
            the largest finite number of the dtype.

    Returns:
        Tensor of the dtype of `x`: `exp(min(x, log(max_value)))`. `-inf` gives 0, NaN
        gives NaN.

    Raises:
        TypeError: if `max_value` is not a Python number.
        ValueError: if `max_value` is not a positive finite number.

    Example:

    >>> safe_exp(keras.ops.array([0.0, 1000.0]))  # [1.0, 3.4e38] in float32, both finite
    """
    x = ops.convert_to_tensor(x)
    x = ops.cast(x, _limits.float_dtype(x))
    cap = _limits.log_max(x.dtype)
    if max_value is not None:
        max_value = _checks.check_number(
            "max_value",
            max_value,
            low=_limits.tiny(x.dtype),
            meaning=" (the largest value returned)",
        )
        cap = min(cap, math.log(max_value))
    below = ops.less(x, cap)
    # Select before the exp so the capped branch has gradient 0, not exp(x) * 0 = inf * 0.
    x_safe = ops.where(below, x, ops.full_like(x, cap))
    return ops.where(ops.isnan(x), x, ops.exp(x_safe))

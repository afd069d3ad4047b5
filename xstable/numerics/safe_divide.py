"""`safe_divide`: division with a finite value and gradient where the divisor is 0."""

import keras
from keras import ops

from xstable.numerics import _limits

__all__ = ["safe_divide"]


def safe_divide(x, y, fill_value=0.0):
    """Divides `x` by `y`, returning `fill_value` where `|y|` is below the smallest normal.

    Like `keras.ops.divide_no_nan`, but the divisor is replaced *before* dividing, so the
    gradient with respect to `x` and `y` is 0 (not NaN) where the fill value is used. Divisors
    below the smallest normal number count as zero because some backends flush subnormals to
    zero, and the result would differ by backend.

    Args:
        x: Tensor, the numerator.
        y: Tensor, the divisor (broadcastable against `x`).
        fill_value: Python float. The value returned where `|y| < tiny`. Defaults to `0.0`.

    Returns:
        Tensor: `x / y` where `|y| >= tiny`, else `fill_value`. A quotient whose true value
        overflows is `±inf` (the right value in floating point); NaN inputs give NaN.

    Raises:
        TypeError: if `fill_value` is not a real number.

    Example:

    >>> safe_divide(keras.ops.array([1.0, 1.0]), keras.ops.array([0.0, 4.0]))  # [0.0, 0.25]
    """
    if isinstance(fill_value, bool) or not isinstance(fill_value, (int, float)):
        raise TypeError(
            "`fill_value` must be a Python int or float (the value used where the divisor is "
            f"zero). Received: fill_value={fill_value!r} of type {type(fill_value).__name__}"
        )
    x = ops.convert_to_tensor(x)
    y = ops.convert_to_tensor(y)
    dtype = _limits.float_dtype(None, keras.backend.result_type(x.dtype, y.dtype))
    x = ops.cast(x, dtype)
    y = ops.cast(y, dtype)
    nonzero = ops.greater_equal(ops.abs(y), _limits.tiny(dtype))
    y_safe = ops.where(nonzero, y, ops.ones_like(y))
    # Bring the divisor near 1 by an exact power of two, numerator alike (the quotient is
    # unchanged). Huge: XLA on CPU divides through a reciprocal that is flushed to 0 for
    # |y| > 8.5e37 in float32. Tiny: backends differentiate through y**2, which underflows to 0
    # for |y| < 1e-19 and turns a zero gradient into 0/0.
    big = _limits.half_exponent_scale(dtype)
    magnitude = ops.abs(y_safe)
    factor = ops.where(
        ops.greater(magnitude, big), 1.0 / big, ops.where(ops.less(magnitude, 1.0 / big), big, 1.0)
    )
    quotient = ops.divide(x * factor, y_safe * factor)
    result = ops.where(nonzero, quotient, ops.cast(fill_value, dtype))
    return ops.where(ops.isnan(y), y + ops.zeros_like(x), result)


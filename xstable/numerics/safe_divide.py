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
        Subnormal numerators are flushed to 0 by TF and XLA on CPU, not by torch.

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
    # Divisors far from 1 are brought into [1/4, 1) by an exact power of two, the numerator
    # alike (the quotient is unchanged, and the scaled numerator is below the quotient, so it
    # cannot overflow where the quotient does not). Huge divisors: XLA on CPU divides through a
    # reciprocal that is flushed to 0 for |y| > 8.5e37 in float32. Tiny ones: autodiff computes
    # x / y**2, which underflows to 0 for |y| < 1.1e-19 and turns a zero gradient into 0/0.
    # Divisors near 1 stay as they are (scaling them would make the intermediate gradient
    # -q / y_scaled overflow first). The factor is applied in two halves, each a normal number.
    magnitude = ops.where(ops.isfinite(y_safe), ops.abs(y_safe), ops.ones_like(y_safe))
    bound = 2.0 ** (_limits.max_exponent(dtype) // 2 - 2)
    far_from_one = ops.logical_or(ops.greater(magnitude, bound), ops.less(magnitude, 1.0 / bound))
    exponent = ops.where(
        far_from_one, ops.floor(ops.log2(magnitude)) + 1.0, ops.zeros_like(magnitude)
    )
    exponent = ops.stop_gradient(exponent)
    first_half = ops.floor(exponent / 2.0)
    two = ops.cast(2.0, dtype)
    first = ops.power(two, -first_half)
    second = ops.power(two, first_half - exponent)
    quotient = ops.divide(x * first * second, y_safe * first * second)
    result = ops.where(nonzero, quotient, ops.cast(fill_value, dtype))
    return ops.where(ops.isnan(y), y + ops.zeros_like(x), result)


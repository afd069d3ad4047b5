"""`safe_pow`: real power, finite in value and gradient at its singular points."""

import math

import numpy as np
from keras import ops

from xstable.numerics import _limits

__all__ = ["safe_pow"]


def _is_number(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (int, float, np.integer, np.floating)
    )


def _check_arguments(x, exponent):
    for argument, value in (("x", x), ("exponent", exponent)):
        if isinstance(value, (bool, np.bool_, str)) or value is None:
            raise TypeError(
                f"`{argument}` must be a number or a float tensor. "
                f"Received: {argument}={value!r} of type {type(value).__name__}"
            )
    if _is_number(x) and _is_number(exponent) and x < 0 and float(exponent) != math.floor(exponent):
        raise ValueError(
            "A negative base has no real power with a non-integer exponent. Take `abs` first "
            "for `|x| ** p`, or use an integer exponent. "
            f"Received: x={x!r}, exponent={exponent!r}"
        )


def safe_pow(x, exponent):
    """Computes the real power `x ** exponent` without inf or infinite gradients.

    Meant for the powers found in losses and norms (`|r| ** p`, p-means, `(1 - p) ** gamma`
    in focal losses), where `x ** p` for `0 < p < 1` has an infinite gradient at `x = 0`,
    `0 ** p` for `p < 0` is `inf`, and large results overflow.

    Documented values at the singular points: `0 ** p` is 0 for `p > 0`, 1 for `p == 0` and the
    largest finite number for `p < 0`; a result that would overflow is the largest finite
    number (negated for a negative base and an odd exponent). Gradients there are 0;
    elsewhere they are those of `x ** p`. A negative base has a real power only for an
    integer exponent (`(-2) ** 3 == -8`); with a non-integer exponent the result is NaN, as in
    real arithmetic, on every backend (and a `ValueError` when both are Python numbers).

    Args:
        x: Tensor, float, or a Python number: the base.
        exponent: Python number or tensor broadcastable against `x`.

    Returns:
        Tensor of the dtype of `x`. NaN in `x` or `exponent`, or a negative base with a
        non-integer exponent, gives NaN.

    Raises:
        TypeError: if `x` or `exponent` is a bool, a string or `None`.
        ValueError: if `x` and `exponent` are Python numbers with `x < 0` and a non-integer
            `exponent`.

    Example:

    >>> safe_pow(keras.ops.array([0.0, 4.0, -2.0]), 0.5)  # [0.0, 2.0, nan]
    >>> safe_pow(keras.ops.array([0.0, -2.0]), 3.0)  # [0.0, -8.0], gradient [0.0, 12.0]
    """
    _check_arguments(x, exponent)
    x = ops.convert_to_tensor(x)
    dtype = _limits.float_dtype(x)
    x = ops.cast(x, dtype)
    exponent = ops.cast(ops.convert_to_tensor(exponent), dtype)
    shape = ops.shape(x + exponent)
    x = ops.broadcast_to(x, shape)
    exponent = ops.broadcast_to(exponent, shape)
    largest = _limits.max_value(dtype)

    negative = ops.less(x, 0)
    # `where`, not `abs`: the gradient of abs at 0 differs between backends.
    magnitude = ops.where(negative, -x, x)
    integer_exponent = ops.equal(ops.floor(exponent), exponent)
    odd_exponent = integer_exponent & ops.equal(ops.mod(ops.abs(exponent), 2.0), 1.0)

    positive = ops.greater_equal(magnitude, _limits.tiny(dtype))
    x_safe = ops.where(positive, magnitude, ops.ones_like(x))
    log_result = exponent * ops.log(x_safe)
    overflows = ops.greater(log_result, _limits.log_max(dtype))
    finite_branch = positive & ~overflows
    x_finite = ops.where(finite_branch, x_safe, ops.ones_like(x))
    power = ops.power(x_finite, exponent)

    at_zero = ops.where(
        ops.greater(exponent, 0),
        ops.zeros_like(x),
        ops.where(ops.equal(exponent, 0), ops.ones_like(x), ops.full_like(x, largest)),
    )
    result = ops.where(positive, ops.where(overflows, ops.full_like(x, largest), power), at_zero)
    result = ops.where(negative & odd_exponent, -result, result)
    undefined = negative & ~integer_exponent
    result = ops.where(undefined, ops.full_like(x, float("nan")), result)
    either_nan = ops.isnan(x) | ops.isnan(exponent)
    return ops.where(either_nan, x + exponent, result)

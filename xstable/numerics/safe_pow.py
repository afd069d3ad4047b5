"""`safe_pow`: power of a non-negative base, finite in value and gradient."""

from keras import ops

from xstable.numerics import _limits

__all__ = ["safe_pow"]


def safe_pow(x, exponent):
    """Computes `x ** exponent` for a non-negative base, without NaN, inf or infinite gradients.

    Meant for the powers found in losses and norms (`|r| ** p`, p-means, `(1 - p) ** gamma`
    in focal losses), where `x ** p` for `0 < p < 1` has an infinite gradient at `x = 0`,
    `0 ** p` for `p < 0` is `inf`, and large results overflow. Negative bases are clamped to 0
    (take `abs` first if you mean `|x| ** p`).

    Documented values at the singular points: `0 ** p` is 0 for `p > 0`, 1 for `p == 0` and the
    largest finite number for `p < 0`; a result that would overflow is the largest finite number.
    Gradients there are 0; elsewhere they are those of `x ** p`.

    Args:
        x: Tensor, float: the base.
        exponent: Python float or tensor broadcastable against `x`.

    Returns:
        Tensor of the dtype of `x`. NaN in `x` or `exponent` gives NaN.

    Example:

    >>> safe_pow(keras.ops.array([0.0, 4.0]), 0.5)  # [0.0, 2.0], gradient [0.0, 0.25]
    """
    x = ops.convert_to_tensor(x)
    dtype = _limits.float_dtype(x)
    x = ops.cast(x, dtype)
    exponent = ops.cast(ops.convert_to_tensor(exponent), dtype)
    shape = ops.shape(x + exponent)
    x = ops.broadcast_to(x, shape)
    exponent = ops.broadcast_to(exponent, shape)
    largest = _limits.max_value(dtype)

    positive = ops.greater_equal(x, _limits.tiny(dtype))
    x_safe = ops.where(positive, x, ops.ones_like(x))
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
    either_nan = ops.isnan(x) | ops.isnan(exponent)
    return ops.where(either_nan, x + exponent, result)

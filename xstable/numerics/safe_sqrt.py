"""`safe_sqrt`: square root with a finite gradient at 0."""

from keras import ops

from xstable.numerics import _limits

__all__ = ["safe_sqrt"]


def safe_sqrt(x):
    """Square root whose gradient is finite everywhere, including at 0.

    `d sqrt(x)/dx = 0.5 / sqrt(x)` is infinite at 0, and `0 * inf` is NaN: that is how a norm
    or a standard deviation of an all-zero vector poisons the weights. Here inputs below the
    smallest normal number (0, negatives, subnormals) return 0 with gradient 0; the singular
    input is replaced before the root and the result selected afterwards (double where).

    Args:
        x: Tensor, float.

    Returns:
        Tensor of the dtype of `x`: `sqrt(x)` where `x >= tiny`, `0` below (absolute error
        at most `sqrt(tiny)`, `1.1e-19` in float32). `+inf` gives `+inf`, NaN gives NaN.

    Example:

    >>> safe_sqrt(keras.ops.array([0.0, 4.0]))  # [0.0, 2.0], gradient [0.0, 0.25]
    """
    x = ops.convert_to_tensor(x)
    x = ops.cast(x, _limits.float_dtype(x))
    positive = ops.greater_equal(x, _limits.tiny(x.dtype))
    x_safe = ops.where(positive, x, ops.ones_like(x))
    result = ops.where(positive, ops.sqrt(x_safe), ops.zeros_like(x))
    return ops.where(ops.isnan(x), x, result)

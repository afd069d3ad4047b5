"""`safe_logsumexp`: `log(sum(exp(x)))` without overflow and with tie-free gradients."""

from keras import ops

from xstable.numerics import _checks, _limits

__all__ = ["safe_logsumexp"]


def safe_logsumexp(x, axis=None, keepdims=False):
    """Computes `log(sum(exp(x), axis))` stably, identically on every backend.

    The maximum is subtracted before exponentiating so nothing overflows, and it is held
    constant for the gradient (the result does not depend on it), so the gradient is exactly
    `softmax(x)` even when several entries tie for the maximum, where backends split the
    gradient of `max` differently. All `-inf` slices give `-inf` (the log of an empty sum).

    Args:
        x: Tensor, float.
        axis: Int, tuple of ints or `None` (all axes).
        keepdims: Bool. Keep the reduced axes with size 1.

    Returns:
        Tensor: the log-sum-exp. Finite for finite `x`; its gradient is `softmax(x)`.

    Raises:
        TypeError: if `keepdims` is not a bool or `axis` not None, an int or a tuple of ints.

    Example:

    >>> safe_logsumexp(keras.ops.array([1000.0, 1000.0]))  # 1000.6931, gradient [0.5, 0.5]
    """
    keepdims = _checks.check_keepdims(keepdims)
    axis = _checks.check_axis(axis)
    x = ops.convert_to_tensor(x)
    x = ops.cast(x, _limits.float_dtype(x))
    shift = ops.stop_gradient(ops.max(x, axis=axis, keepdims=True))
    shift = ops.where(ops.isfinite(shift), shift, ops.zeros_like(shift))
    result = ops.log(ops.sum(ops.exp(x - shift), axis=axis, keepdims=True)) + shift
    if not keepdims:
        result = ops.squeeze(result, axis=axis) if axis is not None else ops.reshape(result, ())
    return result

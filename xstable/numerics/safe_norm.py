"""`safe_norm`: the Euclidean norm with a finite gradient at 0 and no premature overflow."""

from keras import ops

from xstable.numerics import _checks, _limits

__all__ = ["safe_norm"]


def safe_norm(x, axis=None, keepdims=False, min_norm=0.0):
    """Euclidean (L2) norm, `max(||x||, min_norm)`, with finite gradients everywhere.

    Two things go wrong with `sqrt(sum(x**2))`: the gradient `x / ||x||` is `0 / 0 = NaN` at
    `x = 0`, and `x**2` overflows for `|x| > 1.8e19` in float32 although the norm itself is
    representable. Here the vector is divided by its largest magnitude (a constant for the
    gradient) before squaring, and all-zero (or below-`min_norm`) vectors are replaced before
    the root and selected afterwards, as `optax.safe_norm` does.

    Args:
        x: Tensor, float.
        axis: Int, tuple of ints or `None` (all axes). Axes to reduce.
        keepdims: Bool. Keep the reduced axes with size 1.
        min_norm: Non-negative float. The returned norm is at least this; where the true norm
            is below it the gradient is 0. Defaults to `0.0`.

    Returns:
        Tensor: the norm. Finite whenever the true norm is representable in the dtype; `inf`
        if any element is infinite, NaN if any is NaN.

    Raises:
        TypeError: if `min_norm` is not a Python number, `keepdims` not a bool or `axis` not
            None, an int or a tuple of ints.
        ValueError: if `min_norm` is negative or not finite.

    Example:

    >>> safe_norm(keras.ops.array([3.0, 4.0]))  # 5.0; at [0, 0] the gradient is [0, 0]
    """
    min_norm = _checks.check_number(
        "min_norm", min_norm, low=0.0, meaning=" (the smallest norm returned)"
    )
    keepdims = _checks.check_keepdims(keepdims)
    axis = _checks.check_axis(axis)
    x = ops.convert_to_tensor(x)
    x = ops.cast(x, _limits.float_dtype(x))
    scale = ops.stop_gradient(ops.max(ops.abs(x), axis=axis, keepdims=True))
    nonzero_scale = ops.greater_equal(scale, _limits.tiny(x.dtype)) & ops.isfinite(scale)
    scale_safe = ops.where(nonzero_scale, scale, ops.ones_like(scale))
    # Rescale by a power of two (exact, and multiplied rather than divided: XLA on CPU divides
    # through a reciprocal that underflows for huge divisors). Constant for the gradient.
    limit = _limits.max_exponent(x.dtype)
    exponent = ops.clip(ops.floor(ops.log2(scale_safe)), -limit, limit)
    down = ops.power(ops.cast(2.0, x.dtype), -exponent)
    up = ops.power(ops.cast(2.0, x.dtype), exponent)
    scaled_sum = ops.sum(ops.square(x * down), axis=axis, keepdims=True)
    # The largest scaled element is in [0.5, 4), so the sum is far from 0 where the scale is
    # nonzero and the root below is never at its singular point.
    sum_safe = ops.where(nonzero_scale, scaled_sum, ops.ones_like(scaled_sum))
    norm = ops.where(nonzero_scale, ops.sqrt(sum_safe) * up, ops.zeros_like(scale))
    # Infinite or NaN elements make the scale non-finite: report them, do not hide them.
    norm = ops.where(ops.isfinite(scale), norm, scale)
    if min_norm > 0:
        large_enough = ops.greater(norm, min_norm)
        norm = ops.where(large_enough, norm, ops.full_like(norm, min_norm))
    if not keepdims:
        norm = ops.squeeze(norm, axis=axis) if axis is not None else ops.reshape(norm, ())
    return norm

"""Cross-entropy on probabilities in one step each way: value and hand-written gradient.

The safe cross-entropies define their value through Keras's clip, applied in value only (see
`_log_probabilities`). Written with `stop_gradient` tricks and left to autodiff, that is ~30
elementwise ops forward and as many backward, where the Keras twin is a handful. These kernels
compute the same value with the fewest ops and give the gradient of that very formula in
closed form through `keras.ops.custom_gradient`, so the arithmetic stays elementwise float and
identical on every backend.

On JAX the categorical cross-entropy is the same formula written for autodiff instead
(`_categorical_by_autodiff`): XLA fuses the whole step itself, and a custom gradient would only
keep it from fusing across the loss.

Gradients with respect to the target are returned as well (soft targets produced by another
network can be trained through the loss); TF and XLA prune them when nothing uses them, and
on torch they are only computed for a target that requires a gradient.
"""

from keras import ops

from xstable import backend
from xstable.losses import _log_probabilities
from xstable.numerics import _limits


def _needs_gradient(x):
    # Only eager torch tensors say whether anyone wants their gradient; TF and JAX prune
    # unused gradient computations from the traced step themselves.
    return getattr(x, "requires_grad", True)


def _upstream(args, upstream):
    # keras.ops.custom_gradient passes the upstream gradient positionally on TF and JAX and
    # as a keyword (after the inputs) on torch.
    if upstream is None:
        (upstream,) = args
    return upstream


def binary_crossentropy_from_probabilities(target, y_pred, axis):
    """Per-sample `mean(-(t log p + (1 - t) log(1 - p)), axis)`, `p` clipped as Keras does.

    `p = clip(y_pred, epsilon, 1 - epsilon)` (Keras's clip on JAX and torch); `1 - p` is
    floored at `epsneg / 2` so that float16, where `1 - epsilon` rounds to 1, never takes
    `log(0)`. The clip acts on the value only: the gradient is that of the formula evaluated
    at the clipped values, `d/dy_pred = ((1 - t) / (1 - p) - t / p) / d`, never zero and never
    infinite for finite inputs (Keras's is zero past the clip).

    Args:
        target: Targets in [0, 1], same shape and dtype as `y_pred`.
        y_pred: Probabilities.
        axis: Int. The axis averaged over (of static size `d`).
    """
    dtype = y_pred.dtype
    low, high = _log_probabilities.probability_bounds(dtype)
    size = y_pred.shape[axis]
    if size is None:  # unknown until run time (a TF graph traced with a None dimension)
        size = ops.shape(y_pred)[axis]

    @ops.custom_gradient
    def kernel(target, y_pred):
        clipped_p = ops.clip(y_pred, low, high)
        clipped_not_p = ops.maximum(1.0 - clipped_p, ops.cast(_limits.epsneg(dtype) / 2, dtype))
        log_p = ops.log(clipped_p)
        log_not_p = ops.log(clipped_not_p)
        not_target = 1.0 - target
        elementwise = -(target * log_p + not_target * log_not_p)
        if not isinstance(size, int) or size != 1:
            # A mean as a sum of scaled terms: finite even when each term is near the max.
            elementwise = elementwise / ops.cast(size, dtype)
        values = ops.sum(elementwise, axis=axis)
        needs_target_gradient = _needs_gradient(target)

        def grad(*args, upstream=None):
            scale = ops.expand_dims(_upstream(args, upstream), axis)
            if not isinstance(size, int) or size != 1:
                scale = scale / ops.cast(size, dtype)
            pred_gradient = scale * (not_target / clipped_not_p - target / clipped_p)
            target_gradient = scale * (log_not_p - log_p) if needs_target_gradient else None
            return target_gradient, pred_gradient

        return values, grad

    return kernel(target, y_pred)


def categorical_crossentropy_from_probabilities(target, y_pred, axis):
    """Per-sample `-sum(t * log(clip(q, epsilon, 1 - epsilon)), axis)`, Keras's formula.

    `p = clip(y_pred, 0, 1)` and `q = p / sum(p, axis)` (no normalization where that sum is
    below `tiny`, e.g. all zeros), then clipped to `[epsilon, 1 - epsilon]` as Keras does.
    The clip acts on the value only: the gradient is that of `-sum(t * log q)` through the
    normalization, with `1 / clip(q)` for the log: with `a = -t / clip(q)`,
    `d/dy_pred = (a - sum(a * q, axis)) / sum(p, axis)`.

    The value is always finite for finite `y_pred`: every log is at least `log(epsilon)`
    and targets are in [0, 1].

    Args:
        target: Targets in [0, 1], same shape and dtype as `y_pred`.
        y_pred: Probabilities.
        axis: Int. The class axis.
    """
    dtype = y_pred.dtype
    tiny = _limits.tiny(dtype)
    if backend.CROSSENTROPY_BY_AUTODIFF:
        return _categorical_by_autodiff(target, y_pred, axis, tiny)
    return _categorical_kernel(target, y_pred, axis, tiny)


def _categorical_kernel(target, y_pred, axis, tiny):
    """`categorical_crossentropy_from_probabilities` with its closed-form gradient."""

    low, high = _log_probabilities.probability_bounds(y_pred.dtype)

    @ops.custom_gradient
    def kernel(target, y_pred):
        p = ops.clip(y_pred, 0.0, 1.0)
        total = ops.sum(p, axis=axis, keepdims=True)
        below_tiny = total < tiny  # False for a NaN total: NaN reaches q and the loss
        divisor = ops.where(below_tiny, 1.0, total)
        q = p / divisor
        clipped_q = ops.clip(q, low, high)
        log_q = ops.log(clipped_q)
        values = -ops.sum(target * log_q, axis=axis)
        needs_target_gradient = _needs_gradient(target)

        def grad(*args, upstream=None):
            scale = ops.expand_dims(_upstream(args, upstream), axis)
            along_q = -(target * scale) / clipped_q
            # No path through the total where it was not divided by.
            through_total = ops.where(
                below_tiny, 0.0, ops.sum(along_q * q, axis=axis, keepdims=True)
            )
            pred_gradient = (along_q - through_total) / divisor
            target_gradient = -scale * log_q if needs_target_gradient else None
            return target_gradient, pred_gradient

        return values, grad

    return kernel(target, y_pred)


def _categorical_by_autodiff(target, y_pred, axis, tiny):
    """`categorical_crossentropy_from_probabilities` written for autodiff (used on JAX).

    The same forward operations as `_categorical_kernel`, and the gradient of its closed form
    up to rounding (two divisions by the divisor instead of one): `-sum(t * log q)` with
    `_log_probabilities.normalized_floored_log`, which expresses each term of that gradient
    through `stop_gradient` (`tests/losses/test_crossentropy_kernels.py` compares the two on
    every backend). On JAX the compiled step with this form is faster than with the custom
    VJP of the closed form (module docstring).
    """
    log_q = _log_probabilities.normalized_floored_log(
        y_pred, axis, tiny, _log_probabilities.probability_bounds(y_pred.dtype)
    )
    return -ops.sum(target * log_q, axis=axis)

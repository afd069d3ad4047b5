"""Log-probabilities for the safe cross-entropies: one formula, identical on every backend.

Keras's own losses disagree across backends when the model outputs probabilities: the TF
backend recovers the logits hidden behind a sigmoid/softmax (`_keras_logits`, or the graph op)
while torch and JAX clip to `[eps, 1 - eps]` and get a zero gradient there. The functions here
never look behind the tensor they are given: they take the log of the probability itself with
a floor, and pass the gradient straight through the floor, so value and gradient are the same
elementwise float32 arithmetic on every backend.
"""

from keras import ops

from xstable.numerics import _limits


def _straight_through(value, x):
    """`value` in the forward pass, the gradient of `x` in the backward pass.

    `x - stop_gradient(x)` is exactly 0 for finite `x` (NaN for NaN, which stays visible).
    """
    return ops.stop_gradient(value) + (x - ops.stop_gradient(x))


def floored_log(q, floor):
    """`log(max(q, floor))`, with gradient `1 / max(q, floor)` everywhere (never 0 or inf)."""
    q_value = ops.stop_gradient(q)
    safe = ops.maximum(q_value, floor)
    return ops.log(safe) + (q - q_value) / safe


def binary_log_probabilities(y_pred, from_logits):
    """Returns `(log p, log(1 - p))` for binary predictions (probabilities or logits).

    From probabilities, `p` is clipped to `[0, 1]` in value only, then `log p` is floored at
    the smallest normal number (`p == 0` means a loss of 87.3 in float32) and `log(1 - p)` at
    half the gap below 1 (`2**-25`: `p == 1.0` means a loss of 17.3 in float32). From logits
    the log-sigmoid is computed stably, with branches chosen by one predicate so the gradient
    at 0 is the same on every backend.
    """
    dtype = y_pred.dtype
    if from_logits:
        negative = ops.less(y_pred, 0)
        minus_abs = ops.where(negative, y_pred, -y_pred)
        softplus_tail = ops.log1p(ops.exp(minus_abs))
        log_p = ops.where(negative, y_pred, ops.zeros_like(y_pred)) - softplus_tail
        log_not_p = ops.where(negative, ops.zeros_like(y_pred), -y_pred) - softplus_tail
        return log_p, log_not_p
    p = _straight_through(ops.clip(y_pred, 0.0, 1.0), y_pred)
    log_p = floored_log(p, _limits.tiny(dtype))
    log_not_p = floored_log(1.0 - p, _limits.epsneg(dtype) / 2)
    return log_p, log_not_p


def categorical_log_probabilities(y_pred, from_logits, axis):
    """Returns `log softmax(y_pred)` (logits) or the floored log of normalized probabilities.

    Probabilities are clipped to `[0, 1]` in value only and normalized to sum to 1 along `axis`
    (as Keras does), then floored at the smallest normal number (`normalized_floored_log`). Logits go through a
    log-softmax whose shift is held constant for the gradient, so ties at the maximum do not
    split the gradient differently per backend.
    """
    dtype = y_pred.dtype
    if from_logits:
        shift = ops.stop_gradient(ops.max(y_pred, axis=axis, keepdims=True))
        shift = ops.where(ops.isfinite(shift), shift, ops.zeros_like(shift))
        shifted = y_pred - shift
        return shifted - ops.log(ops.sum(ops.exp(shifted), axis=axis, keepdims=True))
    return normalized_floored_log(y_pred, axis, _limits.tiny(dtype))


def normalized_floored_log(y_pred, axis, tiny):
    """`log(max(q, tiny))`, `q = clip(y_pred, 0, 1) / sum(clip(y_pred, 0, 1), axis)` (no
    normalization where that sum is below `tiny`), with the closed-form gradient.

    Written for autodiff, with each term of the gradient expressed through `stop_gradient`:

    - the clip passes the gradient straight through (0 at an infinite probability, whose
      value is clipped like any other: `x - stop_gradient(x)` would be NaN there);
    - the normalization's gradient with respect to the total is `-q / total`: autodiff of
      `p / total` computes `p / total**2` on JAX, which overflows to infinity for totals
      below ~1e-19 (and times a zero upstream gradient gives NaN);
    - the floor passes `1 / max(q, tiny)` (`floored_log`).

    The safe categorical cross-entropy on JAX is `-sum(t * this)`
    (`_crossentropy_kernels._categorical_by_autodiff`); `tests/losses/test_crossentropy_kernels.py`
    compares it with the closed-form kernel TF and torch use, on every backend.
    """
    clipped = ops.stop_gradient(ops.clip(y_pred, 0.0, 1.0))
    finite = ops.where(ops.isfinite(y_pred), y_pred, 0.0)
    p = clipped + (finite - ops.stop_gradient(finite))
    total = ops.sum(p, axis=axis, keepdims=True)
    divisor = ops.where(total < tiny, 1.0, total)  # no gradient path where not divided by
    constant_divisor = ops.stop_gradient(divisor)
    q_value = clipped / constant_divisor  # q's value, held constant
    q = p / constant_divisor - q_value * ((divisor - constant_divisor) / constant_divisor)
    return floored_log(q, tiny)

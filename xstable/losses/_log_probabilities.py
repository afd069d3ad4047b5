"""Log-probabilities for the safe cross-entropies: one formula, identical on every backend.

Keras's own losses disagree across backends when the model outputs probabilities: the TF
backend recovers the logits hidden behind a sigmoid/softmax (`_keras_logits`, or the graph op)
while torch and JAX clip to `[epsilon, 1 - epsilon]`. The functions here never look behind
the tensor they are given: they take the log of the probability clipped as Keras clips it
(so the values are Keras's), and pass the gradient straight through the clip, so value and
gradient are the same elementwise arithmetic on every backend. Exact values and gradients
from logits need the logits: `from_logits=True` (see `xstable.losses.to_logits_model`).
"""

import keras
from keras import ops

from xstable.numerics import _limits


def probability_bounds(dtype):
    """`(low, high)`: Keras's clip of probabilities, `[epsilon, 1 - epsilon]`.

    `epsilon` is `keras.config.epsilon()` (1e-7 by default), read at each call as Keras does.
    The low bound is at least the smallest normal number of `dtype`, so a float16 log never
    meets a flushed subnormal; in float32 and float64 the bounds are exactly Keras's.
    """
    epsilon = keras.config.epsilon()
    return max(epsilon, _limits.tiny(dtype)), 1.0 - epsilon


def floored_log(q, floor, ceiling=None):
    """`log(clip(q, floor, ceiling))`, with gradient `1 / clip(q, floor, ceiling)` everywhere
    (never 0 or inf). `ceiling=None` means no upper bound."""
    q_value = ops.stop_gradient(q)
    safe = ops.maximum(q_value, floor) if ceiling is None else ops.clip(q_value, floor, ceiling)
    return ops.log(safe) + (q - q_value) / safe


def binary_log_probabilities(logits):
    """Returns `(log sigmoid(z), log(1 - sigmoid(z)))` for logits `z`, computed stably.

    The branches are chosen by one predicate, so the gradient at 0 is the same on every
    backend.
    """
    negative = ops.less(logits, 0)
    minus_abs = ops.where(negative, logits, -logits)
    softplus_tail = ops.log1p(ops.exp(minus_abs))
    log_p = ops.where(negative, logits, ops.zeros_like(logits)) - softplus_tail
    log_not_p = ops.where(negative, ops.zeros_like(logits), -logits) - softplus_tail
    return log_p, log_not_p


def categorical_log_probabilities(y_pred, from_logits, axis):
    """Returns `log softmax(y_pred)` (logits) or the clipped log of normalized probabilities.

    Probabilities are clipped to `[0, 1]` in value only and normalized to sum to 1 along `axis`
    (as Keras does), then clipped to `[epsilon, 1 - epsilon]` (`normalized_floored_log`).
    Logits go through a log-softmax whose shift is held constant for the gradient, so ties at
    the maximum do not split the gradient differently per backend.
    """
    dtype = y_pred.dtype
    if from_logits:
        shift = ops.stop_gradient(ops.max(y_pred, axis=axis, keepdims=True))
        shift = ops.where(ops.isfinite(shift), shift, ops.zeros_like(shift))
        shifted = y_pred - shift
        return shifted - ops.log(ops.sum(ops.exp(shifted), axis=axis, keepdims=True))
    return normalized_floored_log(y_pred, axis, _limits.tiny(dtype), probability_bounds(dtype))


def normalized_floored_log(y_pred, axis, tiny, bounds):
    """`log(clip(q, *bounds))`, `q = clip(y_pred, 0, 1) / sum(clip(y_pred, 0, 1), axis)` (no
    normalization where that sum is below `tiny`), with the closed-form gradient.

    Written for autodiff, with each term of the gradient expressed through `stop_gradient`:

    - the clip passes the gradient straight through (0 at an infinite probability, whose
      value is clipped like any other: `x - stop_gradient(x)` would be NaN there);
    - the normalization's gradient with respect to the total is `-q / total`: autodiff of
      `p / total` computes `p / total**2` on JAX, which overflows to infinity for totals
      below ~1e-19 (and times a zero upstream gradient gives NaN);
    - the clip to `bounds` (Keras's `[epsilon, 1 - epsilon]`) passes `1 / clip(q)`
      (`floored_log`).

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
    return floored_log(q, *bounds)

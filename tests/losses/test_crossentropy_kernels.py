"""The two forms of the categorical cross-entropy on probabilities agree on every backend.

JAX uses `_categorical_by_autodiff`, TF and torch `_categorical_kernel` (the same formula with
a closed-form gradient); each backend runs both here, eagerly, and the values and gradients
must agree, including rows that sum to less than `tiny`, subnormal and out-of-range values.
"""

import keras
import numpy as np
from hypothesis import given, settings

from tests.losses._strategies import raw_probabilities, soft_targets
from tests.numerics._grad import value_and_grad
from xstable.losses import _crossentropy_kernels
from xstable.losses.safe_sparse_categorical_crossentropy import _picked_by_gather
from xstable.numerics import _limits

TINY = float(_limits.tiny("float32"))


def _kernel(y, p):
    return _crossentropy_kernels._categorical_kernel(y, p, -1, TINY)


def _autodiff(y, p):
    return _crossentropy_kernels._categorical_by_autodiff(y, p, -1, TINY)


@settings(max_examples=60, deadline=None)
@given(soft_targets, raw_probabilities)
def test_autodiff_form_matches_the_closed_form_kernel(y, p):
    kernel_value, kernel_grad = value_and_grad(_kernel, y, p, argnum=1)
    value, grad = value_and_grad(_autodiff, y, p, argnum=1)
    _, kernel_target_grad = value_and_grad(_kernel, y, p, argnum=0)
    _, target_grad = value_and_grad(_autodiff, y, p, argnum=0)
    # Same forward operations: the same value.
    np.testing.assert_allclose(value, kernel_value, rtol=1e-6, atol=0)
    np.testing.assert_allclose(target_grad, kernel_target_grad, rtol=1e-6, atol=0)
    _assert_gradients_agree(grad, kernel_grad, y, p)


def _assert_gradients_agree(grad, kernel_grad, y, p):
    """The prediction gradient: (a - s) / d in one form, a / d - s / d in the other, where
    a = -t / max(q, tiny) and s = sum(a * q): the two differ by float32 rounding of the
    larger of the terms that cancel. Where the closed form overflows, so does the other."""
    clipped = np.clip(p.astype(np.float64), 0.0, 1.0)
    total = clipped.sum(-1, keepdims=True)
    divisor = np.where(total < TINY, 1.0, total)
    q = clipped / divisor
    along_q = -y / np.maximum(q, TINY)
    through = np.abs((along_q * q).sum(-1, keepdims=True))
    scale = (np.abs(along_q) + through) / divisor
    representable = np.isfinite(kernel_grad)
    assert (np.isfinite(grad) == representable).all(), (y, p, grad, kernel_grad)
    deviation = np.abs(grad[representable] - kernel_grad[representable])
    bound = (1e-6 * np.abs(kernel_grad) + 2.0**-22 * scale + 1e-30)[representable]
    assert (deviation <= bound).all(), (y, p, grad, kernel_grad)


@settings(max_examples=30, deadline=None)
@given(raw_probabilities)
def test_sparse_gather_path_agrees_with_the_one_hot_kernel(p):
    # The sparse loss gathers the label's log-probability when the class count is unknown
    # at trace time; from probabilities that is the same shared formula.
    labels = np.array([2, 0], np.int32)
    one_hot = np.eye(3, dtype=np.float32)[labels]
    value, grad = value_and_grad(
        lambda y, q: _picked_by_gather(q, keras.ops.convert_to_tensor(y), False, -1),
        labels,
        p,
        argnum=1,
    )
    kernel_value, kernel_grad = value_and_grad(_kernel, one_hot, p, argnum=1)
    np.testing.assert_allclose(value, kernel_value, rtol=1e-6, atol=0)
    _assert_gradients_agree(grad, kernel_grad, one_hot, p)

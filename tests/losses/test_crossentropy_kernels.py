"""The two forms of the categorical cross-entropy on probabilities agree on every backend.

JAX uses `_categorical_by_autodiff`, TF and torch `_categorical_kernel` (the same formula with
a closed-form gradient); each backend runs both here, eagerly, and the values and gradients
must agree, including rows that sum to less than `tiny`, subnormal and out-of-range values.
"""

import numpy as np
from hypothesis import given, settings

from tests.losses._strategies import raw_probabilities, soft_targets
from tests.numerics._grad import value_and_grad
from xstable.losses import _crossentropy_kernels
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
    # The prediction gradient: (a - s) / d in one form, a / d - s / d in the other, where
    # a = -t / max(q, tiny) and s = sum(a * q): the two differ by float32 rounding of the
    # larger of the terms that cancel. Where the closed form overflows, so does the other.
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

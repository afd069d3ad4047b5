import numpy as np
from hypothesis import given, settings

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from tests.numerics._strategies import FLOAT32_TINY, float32_arrays
from xstable.numerics import safe_sqrt


@settings(max_examples=30, deadline=None)
@given(float32_arrays())
def test_value_and_gradient_match_float64_reference_on_adversarial_inputs(x):
    value, grad = value_and_grad(safe_sqrt, x)
    x64 = x.astype(np.float64)
    ok = x64 >= FLOAT32_TINY
    root = np.sqrt(np.where(ok, x64, 1.0))
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (x, value, grad)
    assert_matches_reference(value, np.where(ok, root, 0.0), "float32")
    assert_matches_reference(grad, np.where(ok, 0.5 / root, 0.0), "float32", what="gradient")


def test_gradient_at_zero_is_zero_not_nan():
    _, grad = value_and_grad(safe_sqrt, np.zeros(3, "float32"))
    assert_matches_reference(grad, np.zeros(3), "exact", what="gradient at 0")


def test_float16_extremes_stay_finite():
    x = np.array([0.0, 6e-8, 6.2e-5, 65504.0], dtype="float16")
    value, grad = value_and_grad(safe_sqrt, x)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (value, grad)
    assert_matches_reference(value[2:], np.sqrt(x[2:].astype(np.float64)), "float16")


def test_nan_propagates():
    assert np.isnan(to_numpy(safe_sqrt(np.array([np.nan], "float32")))).all()

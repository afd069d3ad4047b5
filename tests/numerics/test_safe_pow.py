import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from tests.numerics._strategies import FLOAT32_MAX, FLOAT32_TINY, float32_arrays
from xstable.numerics import safe_pow
from xstable.numerics._limits import log_max


def _reference(x, p):
    x = x.astype(np.float64)
    positive = x >= FLOAT32_TINY
    x_safe = np.where(positive, x, 1.0)
    with np.errstate(over="ignore"):
        power = x_safe**p
    overflow = p * np.log(x_safe) > log_max("float32")
    at_zero = FLOAT32_MAX if p < 0 else (1.0 if p == 0 else 0.0)
    value = np.where(positive, np.where(overflow, FLOAT32_MAX, power), at_zero)
    with np.errstate(over="ignore", divide="ignore"):
        grad = np.where(positive & ~overflow, p * x_safe ** (p - 1.0), 0.0)
    return value, grad


@settings(max_examples=30, deadline=None)
@given(float32_arrays(), st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 3.0, -0.5, -1.0]))
def test_value_and_gradient_match_reference(x, p):
    value, grad = value_and_grad(lambda t: safe_pow(t, p), x)
    expected, expected_grad = _reference(x, p)
    assert np.isfinite(value).all(), (x, p, value)
    assert_matches_reference(value, expected, "float32_loose")
    representable = np.abs(expected_grad) < FLOAT32_MAX / 4
    assert np.isfinite(grad[representable]).all(), (x, p, grad)
    assert_matches_reference(
        grad[representable], expected_grad[representable], "float32_loose", what="gradient"
    )


def test_zero_base_documented_values_and_zero_gradient():
    x = np.zeros(1, "float32")
    for p, expected in [(0.5, 0.0), (0.0, 1.0), (-1.0, FLOAT32_MAX)]:
        value, grad = value_and_grad(lambda t, p=p: safe_pow(t, p), x)
        assert_matches_reference(value, np.array([expected]), "float32")
        assert_matches_reference(grad, np.zeros(1), "exact", what=f"gradient of 0**{p}")


def test_nan_propagates():
    assert np.isnan(to_numpy(safe_pow(np.array([np.nan], "float32"), 2.0))).all()

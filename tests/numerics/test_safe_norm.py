import numpy as np
import pytest
from hypothesis import example, given, settings

from tests.helpers import assert_matches_reference
from tests.numerics._float32_reference import assert_float32_result
from tests.numerics._grad import value_and_grad
from tests.numerics._strategies import FLOAT32_TINY, float32_arrays
from xstable.numerics import safe_norm


@settings(max_examples=30, deadline=None)
@given(float32_arrays())
# The float64 norm is a hair above FLOAT32_MAX but rounds to it: finite in float32 (found by a
# fresh Hypothesis run; the old reference expected inf).
@example(np.array([0, 0, 0, 0, 3.4028235e38, 2.5353015e30], np.float32))
# Rounds to inf in float32.
@example(np.array([3e38, 3e38, 0, 0, 0, 0], np.float32))
def test_norm_and_gradient_match_float64_reference(x):
    value, grad = value_and_grad(safe_norm, x)
    x64 = x.astype(np.float64)
    # Subnormal entries count as 0 (some backends flush them).
    x64 = np.where(np.abs(x64) >= FLOAT32_TINY, x64, 0.0)
    norm = np.linalg.norm(x64)
    if assert_float32_result(value, np.array(norm), "float32"):
        return  # overflowed, as float32 must (or may, within rounding of FLOAT32_MAX)
    expected_grad = x64 / norm if norm > 0 else np.zeros_like(x64)
    assert np.isfinite(grad).all(), (x, grad)
    assert_matches_reference(grad, expected_grad, "float32_loose", what="gradient")


def test_zero_vector_has_zero_gradient():
    value, grad = value_and_grad(lambda t: safe_norm(t, axis=-1), np.zeros((2, 3), "float32"))
    assert_matches_reference(value, np.zeros(2), "exact")
    assert_matches_reference(grad, np.zeros((2, 3)), "exact", what="gradient at 0")


def test_axis_keepdims_and_min_norm():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], "float32")
    out = safe_norm(x, axis=1, keepdims=True, min_norm=1.0)
    assert_matches_reference(out, np.array([[5.0], [1.0]]), "float32")


def test_rejects_negative_min_norm():
    with pytest.raises(ValueError, match=r"`min_norm`.*Received: min_norm=-1"):
        safe_norm(np.ones(2, "float32"), min_norm=-1)

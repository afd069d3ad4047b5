import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference
from tests.numerics._float32_reference import assert_float32_result, near_float32_max
from tests.numerics._grad import value_and_grad
from tests.numerics._strategies import FLOAT32_MAX, FLOAT32_TINY, finite_float32
from xstable.numerics import safe_divide

pairs = st.lists(st.tuples(finite_float32, finite_float32), min_size=6, max_size=6).map(
    lambda p: (np.array([a for a, _ in p], "float32"), np.array([b for _, b in p], "float32"))
)


def _reference(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    nonzero = np.abs(y) >= FLOAT32_TINY
    y_safe = np.where(nonzero, y, 1.0)
    # Float64 quotient; `assert_float32_result` rounds it to float32 (inf beyond the range).
    return np.where(nonzero, x / y_safe, 0.0)


@settings(max_examples=30, deadline=None)
@given(pairs)
# Quotients a hair above FLOAT32_MAX round to it or to inf (within rounding of the boundary).
@example((np.full(6, 3.4028235e38, "float32"), np.full(6, 1.0 - 2.0**-24, "float32")))
@example((np.full(6, 3.4028233e38, "float32"), np.full(6, 1.0 - 2.0**-24, "float32")))
# y**2 underflows (JAX's gradient of x / y was 0/0 = NaN here; found by a fresh Hypothesis run).
@example((np.zeros(6, "float32"), np.array([0, 0, 0, 0, 0, 7.251904e-20], "float32")))
@example((np.full(6, 2e19, "float32"), np.full(6, 1e-19, "float32")))
def test_value_and_gradients_on_adversarial_inputs(xy):
    x, y = xy
    value, grad_x = value_and_grad(safe_divide, x, y, argnum=0)
    _, grad_y = value_and_grad(safe_divide, x, y, argnum=1)
    # TF and XLA on CPU flush subnormal numerators to 0, torch does not: either is right.
    subnormal_x = (np.abs(x) > 0) & (np.abs(x) < FLOAT32_TINY)
    assert np.isfinite(value[subnormal_x]).all()
    assert_float32_result(value[~subnormal_x], _reference(x, y)[~subnormal_x], "float32")
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    nonzero = np.abs(y64) >= FLOAT32_TINY
    y_safe = np.where(nonzero, y64, 1.0)
    expected_gx = np.where(nonzero, 1.0 / y_safe, 0.0)
    expected_gy = np.where(nonzero, -x64 / y_safe**2, 0.0)
    assert_matches_reference(grad_x, expected_gx, "float32", what="gradient wrt x")
    representable = (
        (np.abs(expected_gy) < FLOAT32_MAX)
        & ~near_float32_max(expected_gy, "float32_loose")
        & ~subnormal_x
    )
    assert np.isfinite(grad_y[representable]).all(), (x, y, grad_y)
    assert_matches_reference(
        grad_y[representable], expected_gy[representable], "float32_loose", what="gradient wrt y"
    )


def test_zero_divisor_gives_fill_value_and_zero_gradient():
    x = np.array([1.0, -2.0], "float32")
    y = np.zeros(2, "float32")
    value, grad_y = value_and_grad(lambda a, b: safe_divide(a, b, fill_value=7.0), x, y, argnum=1)
    assert_matches_reference(value, np.array([7.0, 7.0]), "exact")
    assert_matches_reference(grad_y, np.zeros(2), "exact", what="gradient wrt y at 0")


def test_huge_divisor_is_exact_on_every_backend():
    # XLA on CPU would return 0 here without the power-of-two rescaling.
    value, _ = value_and_grad(safe_divide, np.array([3e38], "float32"), np.array([3e38], "float32"))
    assert_matches_reference(value, np.array([1.0]), "float32")


def test_rejects_a_non_numeric_fill_value():
    with pytest.raises(TypeError, match=r"`fill_value`.*Received: fill_value='0'"):
        safe_divide(1.0, 0.0, fill_value="0")


def test_infinite_divisor_gives_zero_and_finite_gradients():
    value, grad_x = value_and_grad(safe_divide, np.array([3.0, -2.0], "float32"),
                                   np.array([np.inf, -np.inf], "float32"))
    assert_matches_reference(value, np.zeros(2), "exact")
    assert_matches_reference(grad_x, np.zeros(2), "exact", what="gradient wrt x")

import numpy as np
import pytest
from hypothesis import given, settings

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from tests.numerics._strategies import float32_arrays
from xstable.numerics import safe_exp
from xstable.numerics._limits import log_max


@settings(max_examples=30, deadline=None)
@given(float32_arrays())
def test_never_overflows_and_matches_reference_below_the_cap(x):
    value, grad = value_and_grad(safe_exp, x)
    cap = log_max("float32")
    x64 = np.minimum(x.astype(np.float64), cap)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (x, value, grad)
    assert_matches_reference(value, np.exp(x64), "float32")
    expected_grad = np.where(x.astype(np.float64) < cap, np.exp(x64), 0.0)
    assert_matches_reference(grad, expected_grad, "float32", what="gradient")


def test_float16_overflow_point_and_custom_max():
    out = to_numpy(safe_exp(np.array([11.0, 12.0, 1000.0], "float16")))
    assert np.isfinite(out).all() and out[0] > 5.9e4, out
    assert_matches_reference(safe_exp(np.array([0.0, 50.0], "float32"), max_value=10.0),
                             np.array([1.0, 10.0]), "float32")


def test_nan_propagates_and_bad_max_is_rejected():
    assert np.isnan(to_numpy(safe_exp(np.array([np.nan], "float32")))).all()
    with pytest.raises(ValueError, match=r"`max_value`.*Received: max_value=-1"):
        safe_exp(1.0, max_value=-1)

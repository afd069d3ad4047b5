import keras
import numpy as np
import pytest
from hypothesis import given, settings

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from tests.numerics._strategies import FLOAT32_TINY, float32_arrays
from xstable.numerics import safe_log


@settings(max_examples=30, deadline=None)
@given(float32_arrays())
def test_value_and_gradient_match_float64_reference_on_adversarial_inputs(x):
    value, grad = value_and_grad(safe_log, x)
    x64 = x.astype(np.float64)
    above = x64 > FLOAT32_TINY
    expected = np.where(above, np.log(np.where(above, x64, 1.0)), np.log(FLOAT32_TINY))
    expected_grad = np.where(above, 1.0 / np.where(above, x64, 1.0), 0.0)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (x, value, grad)
    assert_matches_reference(value, expected, "float32")
    assert_matches_reference(grad, expected_grad, "float32", what="gradient")


def test_non_finite_inputs_are_reported_not_hidden():
    out = to_numpy(safe_log(np.array([np.nan, np.inf], dtype="float32")))
    assert np.isnan(out[0]) and out[1] == np.inf


def test_custom_floor_and_float16():
    out = safe_log(np.array([0.0, 1e-3, 6e-8, 65504.0], dtype="float16"), floor=1e-4)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert_matches_reference(
        out, np.log(np.array([1e-4, 1e-3, 1e-4, 65504.0])), "float16", what="float16 log"
    )
    _, grad = value_and_grad(safe_log, np.array([0.0, 6e-8, 1.0], dtype="float16"))
    assert np.isfinite(grad).all() and grad[2] == 1.0, grad


def test_rejects_a_non_positive_floor():
    with pytest.raises(ValueError, match=r"`floor`.*Received: floor=0"):
        safe_log(np.ones(2, "float32"), floor=0)


@pytest.mark.parametrize(
    "floor, error, message",
    [
        (1e300, ValueError, r"`floor` must be a finite number in .*Received: floor=1e\+300"),
        (1e-45, ValueError, r"`floor`.*Received: floor=1e-45"),
        (float("inf"), ValueError, r"`floor`.*Received: floor=inf"),
        (float("nan"), ValueError, r"`floor`.*Received: floor=nan"),
        ("1e-3", TypeError, r"`floor` must be a Python number.*Received: floor='1e-3'"),
        (True, TypeError, r"`floor`.*Received: floor=True"),
    ],
)
def test_floors_are_validated_alike_on_every_backend(floor, error, message):
    with pytest.raises(error, match=message):
        safe_log(np.ones(2, "float32"), floor=floor)

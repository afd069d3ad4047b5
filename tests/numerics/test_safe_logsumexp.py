import numpy as np
from hypothesis import given, settings

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from tests.numerics._strategies import float32_arrays
from xstable.numerics import safe_logsumexp


@settings(max_examples=30, deadline=None)
@given(float32_arrays())
def test_value_and_softmax_gradient_match_reference(x):
    value, grad = value_and_grad(safe_logsumexp, x)
    x64 = x.astype(np.float64)
    shift = x64.max()
    expected = shift + np.log(np.sum(np.exp(x64 - shift)))
    softmax = np.exp(x64 - shift) / np.sum(np.exp(x64 - shift))
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (x, value, grad)
    assert_matches_reference(value, np.array(expected), "float32")
    assert_matches_reference(grad, softmax, "float32", what="gradient")


def test_tied_maxima_split_the_gradient_evenly_on_every_backend():
    value, grad = value_and_grad(safe_logsumexp, np.array([1000.0, 1000.0], "float32"))
    assert_matches_reference(value, np.array(1000.0 + np.log(2.0)), "float32")
    assert_matches_reference(grad, np.array([0.5, 0.5]), "float32", what="gradient")


def test_axis_and_all_negative_infinity_slice():
    x = np.array([[0.0, 0.0], [-np.inf, -np.inf]], "float32")
    out = to_numpy(safe_logsumexp(x, axis=1))
    assert_matches_reference(out, np.array([np.log(2.0), -np.inf]), "float32")

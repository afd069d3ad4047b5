"""The test-only gradient helper computes true gradients on every backend."""

import numpy as np
from keras import ops

from tests.helpers import assert_matches_reference
from tests.numerics._grad import value_and_grad


def test_gradient_of_a_known_function():
    x = np.array([-2.0, 0.5, 3.0], dtype="float32")
    value, grad = value_and_grad(lambda t: ops.square(t) * 3.0, x)
    assert_matches_reference(value, 3.0 * x.astype("float64") ** 2, "float32")
    assert_matches_reference(grad, 6.0 * x.astype("float64"), "float32", what="gradient")


def test_gradient_with_respect_to_a_later_argument():
    x = np.array([2.0], dtype="float32")
    y = np.array([4.0], dtype="float32")
    _, grad = value_and_grad(lambda a, b: a / b, x, y, argnum=1)
    assert_matches_reference(grad, np.array([-2.0 / 16.0]), "float32", what="gradient")

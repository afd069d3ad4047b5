import numpy as np

from tests.helpers import assert_matches_reference
from xstable.scenarios.handwritten_bce import handwritten_binary_crossentropy


def test_matches_the_formula_away_from_saturation():
    y = np.array([0.0, 1.0, 0.3], "float32")
    p = np.array([[0.2], [0.9], [0.5]], "float32")
    expected = -np.mean(y * np.log(p[:, 0]) + (1 - y) * np.log(1 - p[:, 0]))
    assert_matches_reference(handwritten_binary_crossentropy(y, p), expected, "float32")


def test_is_infinite_at_a_saturated_probability():
    # The unsafe behaviour the stress variants rely on: log(1 - 1) = -inf.
    loss = handwritten_binary_crossentropy(np.zeros(2, "float32"), np.ones((2, 1), "float32"))
    assert_matches_reference(loss, np.inf, "exact", what="loss at p = 1, y = 0")

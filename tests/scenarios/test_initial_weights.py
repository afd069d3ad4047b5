import keras
import numpy as np
import pytest

from tests.helpers import assert_matches_reference
from xstable.scenarios.initial_weights import portable_initial_weights


def _reference(seed, shapes):
    # Independent NumPy reference: Glorot uniform kernels, drawn in order.
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        limit = np.sqrt(6.0 / (shape[0] + shape[1]))
        out.append(rng.uniform(-limit, limit, size=shape).astype("float32"))
    return out


def test_kernels_are_numpy_glorot_and_the_rest_is_kept():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.layers[-1].bias.assign([10.0])
    weights = portable_initial_weights(model, seed=5)
    kernels = _reference(5, [(3, 4), (4, 1)])
    assert_matches_reference(weights[0], kernels[0], "exact", what="first kernel")
    assert_matches_reference(weights[1], np.zeros(4), "exact", what="first bias")
    assert_matches_reference(weights[2], kernels[1], "exact", what="second kernel")
    assert_matches_reference(weights[3], [10.0], "exact", what="assigned bias")


def test_zero_initialized_kernels_are_kept_and_take_no_draw():
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones"),
        ]
    )
    weights = portable_initial_weights(model, seed=5)
    assert_matches_reference(weights[0], _reference(5, [(3, 4)])[0], "exact", what="kernel")
    assert_matches_reference(weights[2], np.zeros((4, 1)), "exact", what="zero kernel")
    assert_matches_reference(weights[3], [1.0], "exact", what="bias as built")


def test_other_kernel_initializers_are_refused():
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2, kernel_initializer="he_normal")]
    )
    with pytest.raises(ValueError, match="only GlorotUniform"):
        portable_initial_weights(model)
    with pytest.raises(TypeError, match="must be a built `keras.Model`"):
        portable_initial_weights("model")

import keras
import numpy as np
import pytest

from xstable.training import TrainingSpec


def _spec(build_model):
    return TrainingSpec("s", build_model, lambda: (np.zeros((2, 3)), np.zeros((2, 1))), dict, seed=7)


def _dense():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_seeded_model_builds_a_fresh_model_with_the_same_weights_each_time():
    spec = _spec(_dense)
    first, second = spec.seeded_model(), spec.seeded_model()
    assert first is not second
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.any(first.get_weights()[0] != 0)


def test_seeded_model_rejects_a_builder_that_returns_no_model():
    with pytest.raises(TypeError, match="`build_model` of spec 's' must return a `keras.Model`"):
        _spec(lambda: "not a model").seeded_model()

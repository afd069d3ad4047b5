import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.losses import _reference as ref
from tests.numerics._grad import value_and_grad
from xstable.losses import SafeCategoricalCrossentropy, safe_categorical_crossentropy

logits = st.lists(
    st.one_of(st.sampled_from([0.0, 50.0, -50.0, 100.0, 1e4, -1e4]), st.floats(-30, 30, width=32)),
    min_size=6,
    max_size=6,
).map(lambda v: np.asarray(v, np.float32).reshape(2, 3))


@settings(max_examples=20, deadline=None)
@given(logits)
def test_softmax_output_gradient_is_p_minus_y_like_the_float64_reference(z):
    y = np.array([[1.0, 0.0, 0.0], [0.2, 0.0, 0.8]], np.float32)

    def fn(t):
        return safe_categorical_crossentropy(y, keras.ops.softmax(t))

    value, grad = value_and_grad(fn, z)
    p32 = to_numpy(keras.ops.softmax(z)).astype(np.float64)
    p_norm = p32 / p32.sum(-1, keepdims=True)
    expected = -(y * np.log(np.maximum(p_norm, ref.TINY))).sum(-1)
    usable = (p32 >= ref.TINY) | (y == 0)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (z, value, grad)
    assert_matches_reference(value, expected, "cross_backend")
    rows = usable.all(-1)
    assert_matches_reference(grad[rows], (p32 - y)[rows], "cross_backend", what="logit gradient")


def test_from_logits_matches_reference_including_extreme_logits():
    z = np.array([[3e38, -3e38, 0.0], [1.0, 2.0, 3.0]], np.float32)
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    value, grad = value_and_grad(lambda t: safe_categorical_crossentropy(y, t, from_logits=True), z)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (value, grad)
    assert_matches_reference(value[1], -ref.log_softmax64(z[1:])[0, 2], "cross_backend")


def test_invalid_targets_raise_and_config_round_trips():
    with pytest.raises(ValueError, match=r"`y_true`.*class probabilities"):
        SafeCategoricalCrossentropy()(np.array([[1.5, 0.0]]), np.array([[0.5, 0.5]]))
    loss = SafeCategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()
    y, p = np.array([[0.0, 1.0]]), np.array([[0.3, 0.7]], np.float32)
    ours = SafeCategoricalCrossentropy(label_smoothing=0.1)(y, p)
    theirs = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(y, p)
    assert_matches_reference(ours, to_numpy(theirs), "float32")

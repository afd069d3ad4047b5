"""Cross-entropy exact from the logits: `to_logits_model`, and the from_logits paths
against float64 references, eager and compiled, on every backend."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.losses import _reference as ref
from tests.losses._compiled import MODES, value_and_grad_in
from xstable.losses import (
    SafeBinaryCrossentropy,
    SafeCategoricalCrossentropy,
    SafeSparseCategoricalCrossentropy,
    safe_binary_crossentropy,
    safe_categorical_crossentropy,
    to_logits_model,
)

_RNG = np.random.default_rng(20)
_X = _RNG.normal(size=(64, 4)).astype("float32")
_Y = ((_X[:, :1] + 0.5 * _X[:, 1:2]) > 0).astype("float32")
_W1 = _RNG.normal(0, 0.5, (4, 8)).astype("float32")
_W2 = _RNG.normal(0, 0.5, (8, 1)).astype("float32")


def _classifier(output_bias):
    """A small sigmoid classifier with fixed weights: the same model on every backend."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.set_weights([_W1, np.zeros(8, "float32"), _W2, np.array([output_bias], "float32")])
    return model


def _logits64(output_bias):
    return np.tanh(_X.astype(np.float64) @ _W1) @ _W2 + output_bias


def test_bias_100_gives_the_exact_loss_from_the_logits():
    model = _classifier(100.0)
    logits_model, loss = to_logits_model(model)
    assert isinstance(loss, SafeBinaryCrossentropy) and loss.from_logits
    expected = ref.bce_from_logits(_Y, _logits64(100.0))[0].mean()
    logits_model.compile(loss=loss)
    assert_matches_reference(logits_model.evaluate(_X, _Y, verbose=0), expected, "float32")
    # About half the samples are wrong by a logit near 100: far above what any loss on the
    # saturated probabilities can say (Keras's clip caps a sample at 16.1).
    assert expected > 40, expected
    model.compile(loss=SafeBinaryCrossentropy())
    assert model.evaluate(_X, _Y, verbose=0) < 16.2
    # The model itself is unchanged, and the copy holds the same weights.
    assert model.layers[-1].activation is keras.activations.sigmoid
    probabilities = to_numpy(keras.ops.sigmoid(logits_model.predict(_X, verbose=0)))
    assert_matches_reference(probabilities, to_numpy(model.predict(_X, verbose=0)), "float32")


def test_bias_20_recovers_within_60_adam_steps():
    logits_model, loss = to_logits_model(_classifier(20.0))
    logits_model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    before = logits_model.evaluate(_X, _Y, verbose=0)
    history = logits_model.fit(_X, _Y, epochs=60, batch_size=64, verbose=0, shuffle=False)
    assert before > 5 and history.history["loss"][-1] < 0.69, (before, history.history["loss"])


@pytest.mark.parametrize(
    "final, loss, expected_type",
    [
        (lambda: [keras.layers.Dense(3, activation="softmax")], None, SafeCategoricalCrossentropy),
        (
            lambda: [keras.layers.Dense(3), keras.layers.Softmax()],
            keras.losses.SparseCategoricalCrossentropy(ignore_class=2),
            SafeSparseCategoricalCrossentropy,
        ),
        (
            lambda: [keras.layers.Dense(1), keras.layers.Activation("sigmoid")],
            keras.losses.BinaryCrossentropy(label_smoothing=0.1),
            SafeBinaryCrossentropy,
        ),
        (
            lambda: [keras.layers.Dense(3, activation="softmax")],
            "categorical_crossentropy",
            SafeCategoricalCrossentropy,
        ),
    ],
)
def test_output_layers_and_losses_map_to_their_logits_twins(final, loss, expected_type):
    keras.utils.set_random_seed(1)
    hidden = keras.layers.Dense(5, activation="relu")
    model = keras.Sequential([keras.Input((4,)), hidden, *final()])
    logits_model, logits_loss = to_logits_model(model, loss=loss)
    assert type(logits_loss) is expected_type and logits_loss.from_logits
    if isinstance(loss, keras.losses.Loss):
        for key in ("label_smoothing", "ignore_class"):
            if key in loss.get_config():
                assert getattr(logits_loss, key) == loss.get_config()[key]
    activation = keras.ops.sigmoid if expected_type is SafeBinaryCrossentropy else keras.ops.softmax
    assert_matches_reference(
        to_numpy(activation(logits_model.predict(_X, verbose=0))),
        to_numpy(model.predict(_X, verbose=0)),
        "float32",
    )


def test_bad_models_and_losses_are_rejected():
    linear = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"`model` must end with a sigmoid or softmax"):
        to_logits_model(linear)
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model"):
        to_logits_model("model")
    with pytest.raises(ValueError, match=r"`loss` 'categorical_crossentropy' expects a softmax"):
        to_logits_model(_classifier(0.0), loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"`loss` must be None or a binary"):
        to_logits_model(_classifier(0.0), loss="mse")
    with pytest.raises(ValueError, match=r"already takes logits"):
        to_logits_model(_classifier(0.0), loss=SafeBinaryCrossentropy(from_logits=True))


LOGITS = [0.0, -0.0, 1e-3, 16.0, 16.7, 20.0, 100.0, -16.2, -87.0, -104.0, 3e38, -3e38]
binary_logits = st.lists(
    st.one_of(st.sampled_from(LOGITS), st.floats(-1e4, 1e4, width=32)), min_size=6, max_size=6
).map(lambda v: np.asarray(v, np.float32).reshape(3, 2))
binary_targets = st.lists(st.sampled_from([0.0, 1.0, 0.3]), min_size=6, max_size=6).map(
    lambda v: np.asarray(v, np.float32).reshape(3, 2)
)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=15, deadline=None)
@given(y=binary_targets, z=binary_logits)
def test_binary_logit_path_matches_float64_eager_and_compiled(mode, y, z):
    value, grad = value_and_grad_in(
        mode, lambda t: safe_binary_crossentropy(y, t, from_logits=True), z
    )
    loss, dloss = ref.bce_from_logits(y, z)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (y, z, value, grad)
    assert_matches_reference(value, loss.mean(axis=-1), "cross_backend", what=f"{mode} value")
    assert_matches_reference(grad, dloss / 2.0, "cross_backend", what=f"{mode} gradient")


categorical_logits = st.lists(
    st.one_of(st.sampled_from([0.0, 50.0, -50.0, 100.0, 1e4, -1e4]), st.floats(-30, 30, width=32)),
    min_size=6,
    max_size=6,
).map(lambda v: np.asarray(v, np.float32).reshape(2, 3))


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=15, deadline=None)
@given(z=categorical_logits)
def test_categorical_logit_path_matches_float64_eager_and_compiled(mode, z):
    y = np.array([[1.0, 0.0, 0.0], [0.2, 0.0, 0.8]], np.float32)
    value, grad = value_and_grad_in(
        mode, lambda t: safe_categorical_crossentropy(y, t, from_logits=True), z
    )
    log_p = ref.log_softmax64(z)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (z, value, grad)
    assert_matches_reference(value, -(y * log_p).sum(-1), "cross_backend", what=f"{mode} value")
    assert_matches_reference(grad, np.exp(log_p) - y, "cross_backend", what=f"{mode} gradient")

import keras
import numpy as np
import pytest

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from xstable.losses import SafeLoss


def test_nonfinite_samples_leave_the_mean_and_the_gradient_stays_finite():
    y = np.array([[1.0], [np.nan], [2.0], [0.0]], np.float32)
    p = np.array([[0.0], [1.0], [2.0], [2.0]], np.float32)
    loss = SafeLoss("mse")
    value, grad = value_and_grad(lambda t: loss(y, t), p)
    assert_matches_reference(value, np.array((1.0 + 0.0 + 4.0) / 3.0), "float32")
    assert_matches_reference(
        grad, np.array([[-2 / 3], [0.0], [0.0], [4 / 3]]), "float32", what="gradient"
    )
    # Counted in eager calls on every backend (a raw jax.grad trace keeps no state).
    loss.nonfinite_counter.reset_state()
    loss(y, p)
    assert float(to_numpy(loss.nonfinite_counter.result())) == 1.0


def test_wraps_functions_and_keras_losses_with_sample_weights():
    y = np.array([[0.0], [1.0]], np.float32)
    p = np.array([[0.5], [0.25]], np.float32)
    w = np.array([2.0, 1.0], np.float32)
    expected = to_numpy(keras.losses.MeanAbsoluteError()(y, p, w))
    for inner in ["mae", keras.losses.mean_absolute_error, keras.losses.MeanAbsoluteError()]:
        assert_matches_reference(SafeLoss(inner)(y, p, w), expected, "float32")


def test_bad_loss_argument_is_rejected():
    with pytest.raises(TypeError, match=r"`loss`.*Received: loss=3"):
        SafeLoss(3)


def test_config_round_trip():
    loss = SafeLoss(keras.losses.LogCosh(), reduction="sum", name="robust")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, SafeLoss) and restored.name == "robust"
    y, p = np.array([[0.0], [3.0]], np.float32), np.array([[1.0], [0.0]], np.float32)
    assert_matches_reference(restored(y, p), to_numpy(loss(y, p)), "exact")


def test_count_is_in_fit_history_and_weights_stay_finite(backend):
    rng = np.random.default_rng(0)
    x = rng.random((16, 3)).astype("float32")
    y = rng.random((16, 1)).astype("float32")
    y[[2, 9]] = np.nan
    loss = SafeLoss("mse")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss=loss, metrics=loss.counters, jit_compile=backend != "torch")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    assert history.history["safe_mean_squared_error_nonfinite"] == [2.0, 2.0]
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights())

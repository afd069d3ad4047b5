"""xstable losses and optimizers put their counters in the logs of the model that uses them."""

import keras
import numpy as np
import pytest

from xstable import _model_reporting
from xstable.losses import SafeBinaryCrossentropy, SafeLoss, SafeSparseCategoricalCrossentropy
from xstable.optimizers import GuardedOptimizer

_TORCH_COMPILE = "jit_compile=True on torch means torch.compile (minutes on CPU)"
_EAGER_RAISES = "torch runs the loss eagerly, where an invalid target raises (tested elsewhere)"


def _regression_data(nan_target_rows=()):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [1.0]])).astype("float32")
    y[list(nan_target_rows)] = np.nan
    return x, y


def _model(activation=None, units=1):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation=activation)])


@pytest.mark.parametrize(
    "jit_compile",
    ["auto", pytest.param(True, marks=pytest.mark.skip_backend("torch", reason=_TORCH_COMPILE))],
    ids=["default", "jit"],
)
def test_safe_loss_count_in_history_without_listing_it(jit_compile):
    x, y = _regression_data(nan_target_rows=(3, 40))
    loss = SafeLoss("mse")
    model = _model()
    model.compile("adam", loss=loss, jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert history.history["safe_mean_squared_error_nonfinite"] == [2, 2]
    assert np.all(np.isfinite(history.history["loss"]))
    evaluated = model.evaluate(x, y, verbose=0, return_dict=True)
    assert evaluated["safe_mean_squared_error_nonfinite"] == 2


def test_listing_the_metric_as_well_counts_once():
    x, y = _regression_data(nan_target_rows=(3,))
    loss = SafeLoss("mse")
    model = _model()
    model.compile("adam", loss=loss, metrics=loss.metrics)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    # Counted once per event (the same metric object, whether or not it is also reported).
    assert history.history["safe_mean_squared_error_nonfinite"] == [1]
    assert model.evaluate(x, y, verbose=0, return_dict=True)[
        "safe_mean_squared_error_nonfinite"
    ] == 1


def test_recompiling_with_a_keras_loss_drops_the_count():
    x, y = _regression_data(nan_target_rows=(3,))
    model = _model()
    model.compile("adam", loss=SafeLoss("mse"))
    model.fit(x, y, verbose=0)
    model.compile("adam", loss="mse")
    history = model.fit(x[4:], y[4:], verbose=0)
    assert set(history.history) == {"loss"}


@pytest.mark.skip_backend("torch", reason=_EAGER_RAISES)
def test_invalid_targets_counted_in_compiled_fit_without_listing():
    x, _ = _regression_data()
    y = (x[:, :1] > 0).astype("float32")
    y[[2, 30]] = 1.5
    model = _model("sigmoid")
    model.compile("adam", loss=SafeBinaryCrossentropy())
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert history.history["safe_binary_crossentropy_invalid_targets"] == [2]
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.skip_backend("torch", reason=_EAGER_RAISES)
def test_out_of_range_sparse_labels_counted_with_a_guarded_optimizer_too():
    x, _ = _regression_data()
    labels = (x[:, 0] > 0).astype("int32")
    labels[7] = 5
    model = _model("softmax", units=3)
    model.compile(GuardedOptimizer("adam"), loss=SafeSparseCategoricalCrossentropy())
    history = model.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    assert history.history["safe_sparse_categorical_crossentropy_invalid_targets"] == [1]
    assert history.history["skipped_steps"] == [0]


def test_a_model_that_does_not_use_the_loss_is_left_alone():
    x, y = _regression_data()
    loss = SafeLoss("mse")
    user, bystander = _model(), _model()
    user.compile("adam", loss=loss)
    bystander.compile("adam", loss="mse")
    user.fit(x, y, verbose=0)
    assert set(bystander.fit(x, y, verbose=0).history) == {"loss"}
    assert _model_reporting.model_uses(user, loss)
    assert not _model_reporting.model_uses(bystander, loss)


def test_model_uses_finds_losses_in_dicts_and_optimizers_inside_wrappers():
    inputs = keras.Input((4,))
    model = keras.Model(
        inputs, {"a": keras.layers.Dense(1)(inputs), "b": keras.layers.Dense(1)(inputs)}
    )
    loss = SafeLoss("mse")
    guard = GuardedOptimizer("sgd")
    model.compile(keras.optimizers.LossScaleOptimizer(guard), loss={"a": loss, "b": "mse"})
    assert _model_reporting.model_uses(model, loss)
    assert _model_reporting.model_uses(model, guard)
    assert not _model_reporting.model_uses(model, SafeLoss("mse"))


def test_called_outside_any_model_the_loss_still_counts():
    loss = SafeLoss("mse")
    values = loss(np.array([[1.0], [np.nan]], "float32"), np.array([[0.0], [0.0]], "float32"))
    assert float(keras.ops.convert_to_numpy(values)) == pytest.approx(1.0)
    assert float(keras.ops.convert_to_numpy(loss.nonfinite_counter.result())) == 1.0
    assert loss._reporter.model is None

"""insert_finite_checks puts a FiniteCheck after every layer without changing the model."""

import warnings

import keras
import numpy as np
import pytest

from tests.helpers import assert_matches_reference, to_numpy
from xstable.errors import NonFiniteError
from xstable.layers import FiniteCheck, insert_finite_checks

FEATURES = 4


def _block():
    return keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(FEATURES, name="bd"),
         keras.layers.ReLU(name="br")],
        name="block",
    )


def _sequential():
    return keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(FEATURES, name="a"), _block(),
         keras.layers.Dense(1, name="z")],
        name="seq",
    )


def _functional():
    inputs = keras.Input((FEATURES,), name="x")
    hidden = _block()(keras.layers.Dense(FEATURES, name="stem")(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden), name="outer")


def _data():
    x = np.random.default_rng(0).normal(size=(16, FEATURES)).astype("float32")
    return x, np.ones((16, 1), "float32")


def _checks(model):
    from xstable._layer_tree import walk_layers

    return sorted(
        layer.name for _, layer, _ in walk_layers(model) if isinstance(layer, FiniteCheck)
    )


@pytest.mark.parametrize(
    "build, expected",
    [
        (_sequential, ["a", "bd", "br", "seq_input", "z"]),
        (_functional, ["bd", "br", "head", "outer_input_0", "stem"]),
    ],
)
def test_checks_every_layer_and_keeps_outputs_and_weights(build, expected):
    model = build()
    checked = insert_finite_checks(model, policy="count")
    assert _checks(checked) == [f"{name}_finite_check" for name in expected]
    x, _ = _data()
    assert_matches_reference(checked(x), to_numpy(model(x)), "exact", what="checked output")
    original_ids = {id(w) for w in model.weights}
    shared = [w for w in checked.weights if id(w) in original_ids]
    assert len(shared) == len(model.weights)


@pytest.mark.parametrize("build", [_sequential, _functional])
def test_checked_model_takes_the_same_input_structure_without_warnings(build):
    # A Sequential's one input must stay one tensor, not become a list of one: Keras warns
    # on every call whose input structure does not match the model's.
    model = build()
    checked = insert_finite_checks(model, policy="raise")
    x, y = _data()
    checked.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        checked(x)
        checked.train_on_batch(x, y)
        checked.predict(x, verbose=0)


def test_count_logs_name_each_layer_in_fit():
    model = insert_finite_checks(_functional(), policy="count")
    model.compile(optimizer="sgd", loss="mse")
    x, y = _data()
    x[5, 2] = np.nan
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert history.history["outer_input_0_finite_check_nonfinite"] == [1.0]
    assert history.history["stem_finite_check_nonfinite"] == [FEATURES]


def test_raise_names_the_first_layer_producing_nan():
    class LogLayer(keras.layers.Layer):
        def call(self, t):
            return keras.ops.log(t)

    model = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(FEATURES, name="d"),
         LogLayer(name="log"), keras.layers.Dense(1, name="z")],
        name="seq",
    )
    checked = insert_finite_checks(model, policy="raise")
    x, _ = _data()
    with pytest.raises(NonFiniteError, match="FiniteCheck `log_finite_check`"):
        checked(x)


def test_rejects_subclassed_and_unbuilt_models():
    class Sub(keras.Model):
        def call(self, t):
            return t

    with pytest.raises(TypeError, match="subclassed"):
        insert_finite_checks(Sub())
    with pytest.raises(ValueError, match="`model` must be built"):
        insert_finite_checks(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(ValueError, match="`policy`"):
        insert_finite_checks(_sequential(), policy="explode")

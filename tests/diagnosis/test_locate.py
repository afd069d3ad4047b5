"""locate_nonfinite finds the stage, layer, tensor and rows of an injected NaN/Inf exactly."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from tests.helpers import to_numpy
from xstable.diagnosis import NonFiniteLocation, locate_nonfinite

BATCH = 6
FEATURES = 3


class InjectNaNInRow(keras.layers.Layer):
    """Identity, except that row `row` of the output becomes NaN: a known forward culprit."""

    def __init__(self, row, **kwargs):
        super().__init__(**kwargs)
        self.row = row

    def call(self, x):
        rows = ops.arange(ops.shape(x)[0])
        hit = ops.expand_dims(ops.equal(rows, self.row), -1)
        return ops.where(hit, ops.full_like(x, float("nan")), x)


class Sqrt(keras.layers.Layer):
    def call(self, x):
        return ops.sqrt(x)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    y = rng.normal(size=(BATCH, 1)).astype("float32")
    return x, y


def _compile(model, optimizer="sgd", loss="mse"):
    model.compile(optimizer=optimizer, loss=loss)
    return model


def _sequential(culprit_at, culprit):
    layers = [keras.Input((FEATURES,))]
    for i in range(4):
        layers.append(culprit if i == culprit_at else keras.layers.Dense(FEATURES, name=f"d{i}"))
    layers.append(keras.layers.Dense(1, name="head"))
    return _compile(keras.Sequential(layers, name="seq"))


def _functional_nested(culprit):
    block = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(FEATURES, name="b0"), culprit], name="block"
    )
    inputs = keras.Input((FEATURES,))
    hidden = keras.layers.Dense(FEATURES, name="stem")(inputs)
    hidden = block(hidden)
    outputs = keras.layers.Dense(1, name="head")(hidden)
    return _compile(keras.Model(inputs, outputs, name="outer"))


class _Subclassed(keras.Model):
    def __init__(self, culprit):
        super().__init__(name="sub")
        self.first = keras.layers.Dense(FEATURES, name="first")
        self.culprit = culprit
        self.head = keras.layers.Dense(1, name="head")

    def call(self, x):
        return self.head(self.culprit(self.first(x)))


def _subclassed(culprit):
    model = _Subclassed(culprit)
    model(np.zeros((1, FEATURES), "float32"))
    return _compile(model)


def test_clean_step_returns_none_and_changes_nothing():
    x, y = _data()
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(4, name="d"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(1, name="head"),
        ]
    )
    _compile(model, optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)  # builds the optimizer state
    before = [to_numpy(v) for v in model.variables]
    optimizer_before = [to_numpy(v) for v in model.optimizer.variables]
    assert locate_nonfinite(model, x, y) is None
    for v, old in zip(model.variables, before):
        np.testing.assert_array_equal(to_numpy(v), old, err_msg=v.path)
    for v, old in zip(model.optimizer.variables, optimizer_before):
        np.testing.assert_array_equal(to_numpy(v), old, err_msg=v.path)


def test_nan_in_input_row_is_located():
    x, y = _data()
    x[4, 1] = np.nan
    loc = locate_nonfinite(_sequential(1, keras.layers.Dense(FEATURES)), x, y)
    assert (loc.stage, loc.tensor, loc.rows, loc.count, loc.layer_path) == (
        "input", "input", [4], 1, None
    )


def test_nan_in_dict_input_names_the_key():
    x, y = _data()
    x[2, 0] = np.inf
    inputs = {"a": keras.Input((FEATURES,), name="a"), "b": keras.Input((1,), name="b")}
    merged = keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    model = _compile(keras.Model(inputs, keras.layers.Dense(1)(merged)))
    loc = locate_nonfinite(model, {"a": x, "b": y}, y)
    assert (loc.stage, loc.rows) == ("input", [2])
    assert "['a']" in loc.detail and "+Inf" in loc.detail


def test_inf_in_target_row_is_located():
    x, y = _data()
    y[3, 0] = -np.inf
    loc = locate_nonfinite(_sequential(1, keras.layers.Dense(FEATURES)), x, y)
    assert (loc.stage, loc.tensor, loc.rows, loc.count) == ("target", "target", [3], 1)


def test_nan_in_sample_weight_is_located():
    x, y = _data()
    weights = np.ones((BATCH,), "float32")
    weights[5] = np.nan
    loc = locate_nonfinite(_sequential(1, keras.layers.Dense(FEATURES)), x, y,
                           sample_weight=weights)
    assert (loc.stage, loc.tensor, loc.rows) == ("target", "sample_weight", [5])


@pytest.mark.parametrize("layer_index", [0, 2, 3])
def test_forward_nan_in_layer_k_of_sequential(layer_index):
    x, y = _data()
    model = _sequential(layer_index, InjectNaNInRow(2, name="inject"))
    loc = locate_nonfinite(model, x, y)
    assert (loc.stage, loc.layer_path, loc.tensor, loc.rows, loc.count) == (
        "forward", "seq/inject", "output", [2], FEATURES
    )
    expected_before = ["seq/d0", "seq/d1", "seq/d2"][:layer_index]
    assert [path for path, _ in loc.last_finite_magnitudes] == expected_before
    assert all(np.isfinite(value) for _, value in loc.last_finite_magnitudes)


def test_forward_nan_in_nested_functional_names_the_full_path():
    x, y = _data()
    loc = locate_nonfinite(_functional_nested(InjectNaNInRow(1, name="inject")), x, y)
    assert (loc.stage, loc.layer_path, loc.rows) == ("forward", "outer/block/inject", [1])
    assert [p for p, _ in loc.last_finite_magnitudes] == ["outer/stem", "outer/block/b0"]


def test_forward_nan_in_subclassed_model():
    x, y = _data()
    loc = locate_nonfinite(_subclassed(InjectNaNInRow(0, name="inject")), x, y)
    assert (loc.stage, loc.layer_path, loc.rows) == ("forward", "sub/inject", [0])


def test_forward_nan_in_subclassed_models_own_code():
    class LogInCall(keras.Model):
        def __init__(self):
            super().__init__(name="own")
            self.a = keras.layers.Dense(FEATURES, name="a")
            self.b = keras.layers.Dense(1, name="b")

        def call(self, x):
            return self.b(ops.log(self.a(x) - 100.0))

    model = LogInCall()
    model(np.zeros((1, FEATURES), "float32"))
    x, y = _data()
    loc = locate_nonfinite(_compile(model), x, y)
    assert (loc.stage, loc.layer_path, loc.rows) == ("forward", "own", list(range(BATCH)))
    assert "own call() code" in loc.detail and "own/b" in loc.detail


def test_backward_through_sqrt_at_zero_is_located():
    x, y = _data()
    zero = keras.layers.Dense(FEATURES, kernel_initializer="zeros", name="zero")
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(FEATURES, name="d0"),
            zero,
            Sqrt(name="sqrt"),
            keras.layers.Dense(1, kernel_initializer="ones", name="head"),
        ],
        name="seq",
    )
    loc = locate_nonfinite(_compile(model), x, y)
    assert (loc.stage, loc.layer_path, loc.tensor) == ("backward", "seq/sqrt", "gradient")
    assert loc.count == BATCH * FEATURES
    assert loc.rows == list(range(BATCH))
    assert [p for p, _ in loc.last_finite_magnitudes][-1] == "seq/sqrt (output gradient)"


def test_backward_through_sqrt_in_nested_functional():
    x, y = _data()
    block = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(FEATURES, kernel_initializer="zeros",
                                                       name="zero"), Sqrt(name="sqrt")],
        name="block",
    )
    loc = locate_nonfinite(_functional_nested_with(block), x, y)
    assert (loc.stage, loc.layer_path) == ("backward", "outer/block/sqrt")


def _functional_nested_with(block):
    inputs = keras.Input((FEATURES,))
    hidden = block(keras.layers.Dense(FEATURES, name="stem")(inputs))
    outputs = keras.layers.Dense(1, kernel_initializer="ones", name="head")(hidden)
    return _compile(keras.Model(inputs, outputs, name="outer"))


def test_nan_from_the_loss_names_the_rows():
    x, y = _data()
    y = np.abs(y)
    y[1, 0] = -1.0  # finite target, but outside the domain of sqrt in the loss below

    def sqrt_loss(y_true, y_pred):
        return ops.mean(ops.sqrt(y_true) * ops.square(y_pred), axis=-1)

    model = _sequential(1, keras.layers.Dense(FEATURES))
    loc = locate_nonfinite(model, x, y, loss=sqrt_loss)
    assert (loc.stage, loc.tensor, loc.layer_path, loc.rows) == ("loss", "loss", None, [1])


def test_loss_gradient_is_reported_when_the_loss_derivative_blows_up():
    x, y = _data()

    def root_error(y_true, y_pred):
        return ops.mean(ops.sqrt(ops.square(y_true - y_pred) * 0.0), axis=-1)

    model = _sequential(1, keras.layers.Dense(FEATURES))
    loc = locate_nonfinite(model, x, y, loss=root_error)
    assert (loc.stage, loc.layer_path, loc.tensor) == ("backward", None, "gradient")


def test_update_overflow_is_located():
    x, y = _data()
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1, name="d")],
                             name="seq")
    _compile(model, optimizer=keras.optimizers.SGD(learning_rate=1e38))
    loc = locate_nonfinite(model, x, y * 1e3)
    assert (loc.stage, loc.layer_path, loc.tensor) == ("update", "seq/d", "update")
    assert loc.count > 0


def test_non_finite_weight_is_reported_before_running():
    x, y = _data()
    model = _sequential(1, keras.layers.Dense(FEATURES, name="d1"))
    kernel = model.get_layer("d1").kernel
    value = to_numpy(kernel).copy()
    value[0, 0] = np.nan
    kernel.assign(value)
    loc = locate_nonfinite(model, x, y)
    assert (loc.stage, loc.layer_path, loc.tensor, loc.count) == ("forward", "seq/d1", "weight", 1)


def test_report_is_json_and_readable():
    x, y = _data()
    loc = locate_nonfinite(_sequential(2, InjectNaNInRow(3, name="inject")), x, y)
    payload = json.loads(json.dumps(loc.to_dict()))
    assert payload["stage"] == "forward" and payload["rows"] == [3]
    text = str(loc)
    assert "seq/inject" in text and "Fix:" in text and "Batch rows: 3" in text
    assert isinstance(loc, NonFiniteLocation)


def test_forward_only_without_targets():
    x, _ = _data()
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1)])
    assert locate_nonfinite(model, x) is None


def test_rejects_non_models_and_missing_loss():
    x, y = _data()
    with pytest.raises(TypeError, match="`model`"):
        locate_nonfinite(lambda t: t, x, y)
    uncompiled = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="`loss=`"):
        locate_nonfinite(uncompiled, x, y)

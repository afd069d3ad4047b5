"""locate_nonfinite's traced step: traced once per model and batch signature, same answers.

Trace counts come from the Python body of the traced function, which TensorFlow and JAX run
only while tracing; on torch the step runs eagerly (like torch's `fit`) and has no trace.
"""

import gc
import weakref

import keras
import numpy as np
import pytest
from keras import ops

from tests.helpers import to_numpy
from xstable.diagnosis import locate_nonfinite
from xstable.inspection import _compiled_update, _instrumented_step

FEATURES = 3
TRACED = pytest.mark.only_backend(
    "tensorflow", "jax", reason="torch runs the diagnostic step eagerly, as its fit does"
)


class InjectNaNInRow(keras.layers.Layer):
    def __init__(self, row, **kwargs):
        super().__init__(**kwargs)
        self.row = row

    def call(self, x):
        hit = ops.expand_dims(ops.equal(ops.arange(ops.shape(x)[0]), self.row), -1)
        return ops.where(hit, ops.full_like(x, float("nan")), x)


class Sqrt(keras.layers.Layer):
    def call(self, x):
        return ops.sqrt(x)


def _data(batch=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, FEATURES)).astype("float32")
    y = rng.normal(size=(batch, 1)).astype("float32")
    return x, y


def _model(*middle, optimizer="sgd"):
    layers = [keras.Input((FEATURES,)), keras.layers.Dense(FEATURES, name="d0"), *middle]
    layers.append(keras.layers.Dense(1, kernel_initializer="ones", name="head"))
    model = keras.Sequential(layers, name="seq")
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _programs(model):
    return list(_instrumented_step._PROGRAMS[model]["steps"].values())


def _counts(model):
    return [(p.compiled.eager_runs, p.compiled.traces) for p in _programs(model)]


# (eager runs, traces) after n calls: TF runs the first call eagerly and traces on the
# second; JAX traces on the first; torch never traces.
def _expected(calls):
    backend = keras.config.backend()
    if backend == "torch":
        return (calls, 0)
    if backend == "tensorflow":
        return (min(calls, 1), 1 if calls > 1 else 0)
    return (0, 1)


@TRACED
def test_the_step_is_traced_once_per_batch_signature_and_reused():
    model = _model()
    x, y = _data()
    assert locate_nonfinite(model, x, y) is None
    assert _counts(model) == [_expected(1)]
    assert locate_nonfinite(model, x * 2.0, y) is None
    assert _counts(model) == [_expected(2)]
    assert locate_nonfinite(model, x, y) is None
    assert locate_nonfinite(model, x * 3.0, y) is None
    assert _counts(model) == [_expected(4)]

    x8, y8 = _data(batch=8)  # a new batch shape is a new signature
    for _ in range(3):
        assert locate_nonfinite(model, x8, y8) is None
    assert locate_nonfinite(model, x, y) is None
    assert _counts(model) == [_expected(5), _expected(3)]


def test_each_backend_traces_or_runs_eagerly_as_documented():
    model = _model()
    x, y = _data()
    for _ in range(3):
        assert locate_nonfinite(model, x, y) is None
    assert _counts(model) == [_expected(3)]


@TRACED
def test_the_update_is_traced_once_and_reads_the_current_optimizer_state():
    model = _model(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    x, y = _data()
    model.train_on_batch(x, y)  # builds the optimizer, as fit does
    assert locate_nonfinite(model, x, y) is None
    assert locate_nonfinite(model, x, y) is None  # traced by now on TF and JAX
    # The state (here the learning rate) is an input of the traced update, not a constant.
    model.optimizer.learning_rate.assign(1e38)
    loc = locate_nonfinite(model, x, y * 1e3)
    assert (loc.stage, loc.tensor) == ("update", "update")
    (update,) = _compiled_update._UPDATES[model.optimizer].values()
    assert (update.compiled.eager_runs, update.compiled.traces) == _expected(3)


def test_weights_changed_after_the_trace_are_seen():
    # The weights are inputs of the traced step: JAX would otherwise bake them in.
    model = _model(keras.layers.Dense(FEATURES, name="d1"))
    x, y = _data()
    assert locate_nonfinite(model, x, y) is None
    kernel = model.get_layer("d1").kernel
    kernel.assign(np.full(tuple(kernel.shape), 1e30, "float32"))
    loc = locate_nonfinite(model, x, y)  # outputs ~1e30 are finite, their square is not
    assert (loc.stage, loc.tensor) == ("loss", "loss")
    value = to_numpy(kernel).copy()
    value[1, 2] = np.nan
    kernel.assign(value)
    loc = locate_nonfinite(model, x, y)
    assert (loc.stage, loc.layer_path, loc.tensor) == ("forward", "seq/d1", "weight")


def test_a_changed_variable_list_drops_the_old_traces():
    model = _model()
    x, y = _data()
    assert locate_nonfinite(model, x, y) is None
    head = model.pop()
    model.add(InjectNaNInRow(3, name="inject"))
    model.add(head)
    loc = locate_nonfinite(model, x, y)
    assert (loc.stage, loc.layer_path, loc.rows) == ("forward", "seq/inject", [3])
    assert len(_programs(model)) == 1


def test_the_cache_does_not_keep_the_model_or_its_optimizer_alive():
    model = _model()
    x, y = _data()
    for _ in range(2):  # traced by the second call on every backend that traces
        assert locate_nonfinite(model, x, y) is None
    model_ref, optimizer_ref = weakref.ref(model), weakref.ref(model.optimizer)
    del model
    gc.collect()
    assert model_ref() is None
    # The model's cache entry goes when the model is collected; what only it held (the
    # traced step, which names the optimizer) goes with the next collection.
    gc.collect()
    assert optimizer_ref() is None


def _located(model, x, y, **kwargs):
    loc = locate_nonfinite(model, x, y, **kwargs)
    return None if loc is None else loc.to_dict()


@TRACED
@pytest.mark.parametrize("case", ["forward", "backward", "loss", "update"])
def test_traced_and_eager_steps_give_the_same_answer(case):
    x, y = _data()
    kwargs = {}
    if case == "forward":
        model = _model(InjectNaNInRow(2, name="inject"))
    elif case == "backward":
        zero = keras.layers.Dense(FEATURES, kernel_initializer="zeros", name="zero")
        model = _model(zero, Sqrt(name="sqrt"))
    elif case == "loss":
        y = np.abs(y)
        y[4, 0] = -1.0
        model = _model()
        kwargs["loss"] = lambda t, p: ops.mean(ops.sqrt(t) * ops.square(p), axis=-1)
    else:
        model = _model(optimizer=keras.optimizers.SGD(learning_rate=1e38))
        y = y * 1e3
    if keras.config.backend() == "tensorflow":
        eager = _located(model, x, y, **kwargs)  # the first call runs eagerly
        traced = _located(model, x, y, **kwargs)
        assert _counts(model) == [(1, 1)]
    else:
        import jax

        traced = _located(model, x, y, **kwargs)
        assert _counts(model) == [(0, 1)]
        with jax.disable_jit():  # the jitted function's body, run op by op
            eager = _located(model, x, y, **kwargs)
    assert traced is not None and traced["stage"] == case

    traced_magnitudes = traced.pop("last_finite_magnitudes")
    eager_magnitudes = eager.pop("last_finite_magnitudes")
    assert traced == eager
    assert [name for name, _ in traced_magnitudes] == [name for name, _ in eager_magnitudes]
    np.testing.assert_allclose(
        [value for _, value in traced_magnitudes],
        [value for _, value in eager_magnitudes],
        rtol=1e-5,
    )

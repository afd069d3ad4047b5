"""NaNSentinel, deprecated: a StabilityMonitor(policy="raise") that keeps its documented
behaviour: stops at the first non-finite value, restores bit-identical state, reports."""

import json
import os

import keras
import numpy as np
import pytest

import xstable
from xstable.callbacks import NaNSentinel
from xstable.callbacks.nan_sentinel import REPORT_JSON_NAME, REPORT_TEXT_NAME

BATCH = 16

pytestmark = pytest.mark.filterwarnings("ignore:`xstable.callbacks.NaNSentinel` is deprecated")


def test_is_deprecated_in_favour_of_stability_monitor():
    with pytest.warns(DeprecationWarning, match=r"NaNSentinel` is deprecated.*StabilityMonitor"):
        sentinel = NaNSentinel(report_dir=None)
    assert isinstance(sentinel, xstable.callbacks.StabilityMonitor)
    assert (sentinel.policy, sentinel.snapshot_every) == ("raise", 1)


def _numpy_copies(variables):
    return [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]


def _assert_bit_identical(actual, expected, what):
    assert len(actual) == len(expected), what
    for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, f"{what}[{index}]"
        assert a.tobytes() == e.tobytes(), (
            f"{what}[{index}] differs bitwise: max abs diff "
            f"{np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)))}"
        )


class StateRecorder(keras.callbacks.Callback):
    """Keeps host copies of weights and optimizer state before every batch."""

    def __init__(self):
        super().__init__()
        self.before = {}

    def on_train_batch_begin(self, batch, logs=None):
        model = self.model
        self.before[(self._epoch, batch)] = (
            _numpy_copies(model.weights),
            _numpy_copies(model.optimizer.variables),
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


class PoisonWeights(keras.callbacks.Callback):
    """Sets one kernel entry to NaN before batch `batch` of epoch `epoch` (after snapshots)."""

    def __init__(self, epoch, batch, when="begin"):
        super().__init__()
        self.at = (epoch, batch)
        self.when = when

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _poison(self, batch):
        if (self._epoch, batch) == self.at:
            kernel = self.model.layers[0].kernel
            value = np.array(keras.ops.convert_to_numpy(kernel.value), copy=True)
            value[0, 0] = np.nan
            kernel.assign(value)

    def on_train_batch_begin(self, batch, logs=None):
        if self.when == "begin":
            self._poison(batch)

    def on_train_batch_end(self, batch, logs=None):
        if self.when == "end":
            self._poison(batch)


def _data(nan_row=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")
    if nan_row is not None:
        x[nan_row, 1] = np.nan
    return x, y


def _model():
    # tanh, not relu: these tests need a NaN input row to give a NaN loss on every machine.
    # TF 2.21's oneDNN fusion of MatMul + BiasAdd + Relu returns 0 for a NaN pre-activation
    # on some CPUs (measured 2026-12-02 on an AVX512-FP16/AMX Xeon; NaN with
    # TF_ENABLE_ONEDNN_OPTS=0 and on the machine of earlier runs): the loss stays finite
    # while the gradient x^T * delta puts NaN into the first kernel.
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


@pytest.mark.parametrize("keep_last_good", ["device", "host"])
def test_nan_input_row_stops_and_restores_state_before_the_failing_step(tmp_path, keep_last_good):
    x, y = _data(nan_row=37)  # batch 2 with batch_size 16
    model = _model()
    recorder = StateRecorder()
    sentinel = NaNSentinel(
        report_dir=tmp_path,
        data=(x, y),
        batch_size=BATCH,
        keep_last_good=keep_last_good,
        verbose=0,
    )
    model.fit(
        x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, callbacks=[recorder, sentinel]
    )

    assert sentinel.triggered
    weights_before, optimizer_before = recorder.before[(0, 2)]
    # Two Adam steps happened, so the restored state is not just the initial one.
    initial_weights, _ = recorder.before[(0, 0)]
    assert any(
        a.tobytes() != b.tobytes() for a, b in zip(weights_before, initial_weights, strict=True)
    )
    _assert_bit_identical(_numpy_copies(model.weights), weights_before, "model.weights")
    _assert_bit_identical(
        _numpy_copies(model.optimizer.variables), optimizer_before, "optimizer.variables"
    )
    assert (0, 3) not in recorder.before, "training went on after the non-finite loss"

    report = sentinel.report
    assert report["trigger"] == {
        "kind": "loss",
        "name": "loss",
        "value": "nan",
        "epoch": 0,
        "batch": 2,
        "global_step": 2,
    }
    assert report["restored"]["done"] and report["restored"]["exact_state_before_failing_step"]
    assert report["restored"]["steps_undone"] == 1
    assert report["restored"]["kept_on"] == "host"  # host copies, checked for NaN there
    assert report["offending_batch"]["rows"] == [32, 48]
    assert report["data_nonfinite_rows"] == {"x": {"count": 1, "first_rows": [37]}}
    assert report["action"] == "stopped"
    # The replay with locate_nonfinite from the restored state names the input row.
    located = report["locate_nonfinite"]
    assert located["found"], located
    assert located["location"]["stage"] == "input"
    assert located["location"]["rows"] == [5]
    assert located["data_rows"] == [37]


def test_reports_are_valid_json_and_readable_text(tmp_path):
    x, y = _data(nan_row=5)
    model = _model()
    sentinel = NaNSentinel(report_dir=tmp_path / "r", data=(x, y), batch_size=BATCH, verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[sentinel])
    json_path = tmp_path / "r" / REPORT_JSON_NAME
    text_path = tmp_path / "r" / REPORT_TEXT_NAME
    assert sentinel.report_paths == {"json": str(json_path), "text": str(text_path)}
    on_disk = json.loads(json_path.read_text())  # strict JSON: NaN is written as "nan"
    assert on_disk == sentinel.report
    assert on_disk["environment"]["backend"] == keras.config.backend()
    text = text_path.read_text()
    assert "non-finite loss `loss` = nan" in text
    assert "epoch 0, batch 0" in text
    assert "`x` has 1 row(s) with NaN/Inf, first: [5]" in text
    assert "stage=input" in text and "rows [5] of `data`" in text
    assert sorted(os.listdir(tmp_path / "r")) == [REPORT_JSON_NAME, REPORT_TEXT_NAME]


def test_raise_mode_raises_nonfinite_error_after_restoring(tmp_path):
    x, y = _data(nan_row=20)  # batch 1
    model = _model()
    recorder = StateRecorder()
    sentinel = NaNSentinel(report_dir=tmp_path, on_nonfinite="raise", verbose=0)
    with pytest.raises(xstable.NonFiniteError, match=r"at epoch 0, batch 1, the loss is nan"):
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[recorder, sentinel],
        )
    _assert_bit_identical(_numpy_copies(model.weights), recorder.before[(0, 1)][0], "weights")
    assert sentinel.report["action"] == "raised"
    # Without `data` the report says how to get the replay instead of guessing rows.
    assert "Pass `data=(x, y)`" in sentinel.report["locate_nonfinite"]["skipped"]
    assert sentinel.report["offending_batch"]["rows"] is None


def test_sparse_host_snapshots_restore_the_older_state_and_say_so(tmp_path):
    x, y = _data(nan_row=3 * BATCH + 1)  # global step 3
    model = _model()
    recorder = StateRecorder()
    sentinel = NaNSentinel(report_dir=None, snapshot_every=2, keep_last_good="host", verbose=0)
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recorder, sentinel]
    )
    weights_before_step_2, optimizer_before_step_2 = recorder.before[(0, 2)]
    _assert_bit_identical(_numpy_copies(model.weights), weights_before_step_2, "weights")
    _assert_bit_identical(
        _numpy_copies(model.optimizer.variables), optimizer_before_step_2, "optimizer"
    )
    restored = sentinel.report["restored"]
    assert restored["snapshot_before_global_step"] == 2
    assert restored["steps_undone"] == 2
    assert not restored["exact_state_before_failing_step"]
    assert restored["kept_on"] == "host"
    assert sentinel.report_paths is None


def test_poisoned_weights_are_undone_to_the_last_finite_snapshot(tmp_path):
    # NaN written into the weights after the snapshot of step 4 (epoch 1, batch 0): the loss
    # of that step is NaN and the state before it (finite) comes back.
    x, y = _data()
    model = _model()
    recorder = StateRecorder()
    sentinel = NaNSentinel(report_dir=None, verbose=0)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[recorder, sentinel, PoisonWeights(epoch=1, batch=0)],
    )
    assert sentinel.report["trigger"]["global_step"] == 4
    assert sentinel.report["trigger"]["epoch"] == 1
    weights, _ = recorder.before[(1, 0)]
    assert all(np.isfinite(w).all() for w in weights)
    _assert_bit_identical(_numpy_copies(model.weights), weights, "weights")


def test_nonfinite_weight_under_a_finite_loss_is_caught_at_that_batch(tmp_path):
    # The last batch's update leaves a NaN weight while every logged loss was finite: the
    # host copy of the state after that batch shows it, and the state before comes back.
    x, y = _data()
    model = _model()
    recorder = StateRecorder()
    sentinel = NaNSentinel(report_dir=None, verbose=0)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[recorder, PoisonWeights(epoch=0, batch=3, when="end"), sentinel],
    )
    assert sentinel.report["trigger"]["kind"] == "weight"
    assert sentinel.report["trigger"]["batch"] == 3
    _assert_bit_identical(_numpy_copies(model.weights), recorder.before[(0, 3)][0], "weights")
    assert (1, 0) not in recorder.before


def test_finite_training_is_untouched(tmp_path):
    x, y = _data()
    model = _model()
    reference = _model()
    reference.set_weights(model.get_weights())
    sentinel = NaNSentinel(report_dir=tmp_path, verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[sentinel])
    reference.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    assert not sentinel.triggered and sentinel.report is None
    assert os.listdir(tmp_path) == []
    _assert_bit_identical(model.get_weights(), reference.get_weights(), "weights vs no callback")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"on_nonfinite": "ignore"}, ValueError, "on_nonfinite"),
        ({"keep_last_good": "disk"}, ValueError, "keep_last_good"),
        ({"snapshot_every": 0}, ValueError, "snapshot_every"),
        ({"snapshot_every": 1.5}, TypeError, "snapshot_every"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"data": np.zeros((3, 2))}, ValueError, "data"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=f"`{match}`.*Received"):
        NaNSentinel(**kwargs)


def test_nonfinite_metric_with_finite_loss_is_reported_as_a_metric(tmp_path):
    def log_of_zero(y_true, y_pred):
        return keras.ops.log(keras.ops.min(y_pred) - keras.ops.min(y_pred))  # -inf

    x, y = _data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=[log_of_zero])
    sentinel = NaNSentinel(report_dir=None, verbose=0)
    history = model.fit(
        x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[sentinel]
    )
    trigger = sentinel.report["trigger"]
    assert (trigger["kind"], trigger["name"], trigger["value"]) == ("metric", "log_of_zero", "-inf")
    assert trigger["batch"] == 0 and sentinel.report["logs"]["loss"] is not None
    assert len(history.history["loss"]) == 1


def test_a_step_the_guard_skipped_is_not_a_nonfinite_metric(tmp_path):
    # Finite loss, NaN gradient (sqrt at 0): the GuardedOptimizer skips every step and logs
    # grad_norm=NaN. That is the guard working, not training going non-finite.
    def distance(y_true, y_pred):
        return keras.ops.sqrt(keras.ops.square(y_pred - y_true))

    x = np.ones((16, 3), "float32")
    y = np.zeros((16, 1), "float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    optimizer = xstable.optimizers.GuardedOptimizer("sgd")
    model.compile(
        optimizer=optimizer,
        loss=distance,
        metrics=[xstable.optimizers.GuardCounters(optimizer)],
    )
    sentinel = NaNSentinel(report_dir=None, verbose=0)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[sentinel])
    assert not sentinel.triggered, sentinel.events
    assert history.history["skipped_steps"] == [2, 4]
    assert np.isnan(history.history["grad_norm"][-1])
    assert history.history["loss"] == [0.0, 0.0]


def test_a_step_the_guard_skipped_does_not_stop_training():
    from xstable.optimizers import GuardedOptimizer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = rng.normal(size=(160, 1)).astype("float32")
    x[40] = np.nan
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(GuardedOptimizer(keras.optimizers.SGD(0.01)), "mse")
    sentinel = NaNSentinel(report_dir=None, verbose=0)
    history = model.fit(
        x, y, batch_size=32, epochs=5, shuffle=False, verbose=0, callbacks=[sentinel]
    )
    assert not sentinel.triggered, sentinel.events
    assert len(history.history["loss"]) == 5
    assert sentinel.skipped_steps == 5


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"include_optimizer": "no"}, TypeError, "include_optimizer='no'"),
        ({"verbose": 2}, ValueError, "verbose=2"),
        ({"report_dir": 3}, TypeError, "report_dir=3"),
    ],
)
def test_more_bad_arguments_give_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        NaNSentinel(**kwargs)

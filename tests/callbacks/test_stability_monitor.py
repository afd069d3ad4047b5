"""StabilityMonitor: one policy vocabulary, composition with the guard, and recovery.

Every training case runs eagerly and compiled (`run_eagerly=True` and the backend's default
compiled step: tf.function, jax.jit; torch trains eagerly either way) on every backend.
"""

import warnings

import keras
import numpy as np
import pytest

from tests.helpers import to_numpy
from xstable.callbacks import StabilityMonitor
from xstable.errors import NonFiniteError
from xstable.optimizers import GuardCounters, GuardedOptimizer

EXECUTION = pytest.mark.parametrize("run_eagerly", [False, True], ids=["compiled", "eager"])


def _regression(rows=512, features=8, scale=3.0, nan_row=None):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(rows, features)) * scale).astype("float32")
    w = rng.normal(size=(features, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(rows, 1))).astype("float32")
    if nan_row is not None:
        x[nan_row] = np.nan
    return x, y


def _linear(optimizer, run_eagerly, loss="mse", metrics=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer, loss, metrics=metrics, run_eagerly=run_eagerly)
    return model


def _trivial_loss(y):
    return float(np.mean((y - y.mean()) ** 2))


def _finite(model):
    return all(np.isfinite(to_numpy(w)).all() for w in model.weights)


def _masked_mse(y_true, y_pred):
    """A loss that drops non-finite rows with a single `where`: its value stays finite,
    but the gradient of a NaN row is NaN (the classic masked-loss leak)."""
    error = keras.ops.square(y_true - y_pred)
    finite = keras.ops.isfinite(error)
    return keras.ops.sum(keras.ops.where(finite, error, 0.0)) / keras.ops.maximum(
        keras.ops.sum(keras.ops.cast(finite, "float32")), 1.0
    )


@EXECUTION
def test_recovery_lets_a_too_high_learning_rate_train(run_eagerly):
    x, y = _regression()
    plain = _linear(keras.optimizers.SGD(0.2), run_eagerly)
    with np.errstate(all="ignore"):
        history = plain.fit(x, y, batch_size=32, epochs=5, verbose=0)
    assert not np.isfinite(history.history["loss"][-1])  # diverges without recovery

    model = _linear(keras.optimizers.SGD(0.2), run_eagerly)
    monitor = StabilityMonitor(lr_factor=0.5, snapshot_every=5, verbose=0)
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[monitor])
    assert monitor.recoveries >= 1
    assert float(to_numpy(model.optimizer.learning_rate)) <= 0.1 + 1e-9
    assert _finite(model)
    final = model.evaluate(x, y, verbose=0)
    assert final < 0.1 * _trivial_loss(y), (final, _trivial_loss(y), monitor.events)


@EXECUTION
def test_restores_weights_and_optimizer_slots_bit_identical_and_lowers_the_rate(run_eagerly):
    x, y = _regression(nan_row=100)  # batch 3 of 16 (batch size 32)
    model = _linear(keras.optimizers.Adam(0.01), run_eagerly)
    monitor = StabilityMonitor(snapshot_every=1, lr_factor=0.25, verbose=0)
    seen = {}

    def after_monitor(batch, logs):
        if monitor.recoveries and "restored" not in seen:
            seen["kept"] = monitor.last_good_state
            seen["restored"] = (
                [to_numpy(v).copy() for v in model.trainable_variables],
                [to_numpy(v).copy() for v in model.optimizer.variables],
                [v.path for v in model.optimizer.variables],
            )

    check = keras.callbacks.LambdaCallback(on_train_batch_end=after_monitor)
    rate_before = float(to_numpy(model.optimizer.learning_rate))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[monitor, check])
    assert monitor.recoveries == 1 and monitor.events[0]["batch"] == 3, monitor.events
    kept_model, kept_optimizer = seen["kept"]
    weights, slots, paths = seen["restored"]
    for kept, now in zip(kept_model, weights, strict=False):
        assert kept.tobytes() == now.tobytes()
    for path, kept, now in zip(paths, kept_optimizer, slots, strict=True):
        if "learning_rate" in path:
            assert float(now) == pytest.approx(float(kept) * 0.25)
        else:
            assert kept.tobytes() == now.tobytes(), path
    assert float(to_numpy(model.optimizer.learning_rate)) <= rate_before * 0.25 * (1 + 1e-6)
    assert _finite(model)


@EXECUTION
def test_a_step_the_guard_skipped_is_not_a_failure(run_eagerly):
    x, y = _regression(nan_row=40)
    optimizer = GuardedOptimizer(keras.optimizers.SGD(0.01))
    model = _linear(optimizer, run_eagerly, metrics=[GuardCounters(optimizer)])
    monitor = StabilityMonitor(verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        history = model.fit(
            x, y, batch_size=32, epochs=5, verbose=0, shuffle=False, callbacks=[monitor]
        )
    assert len(history.history["loss"]) == 5  # all epochs ran
    assert monitor.recoveries == 0 and monitor.events == []
    assert history.history["skipped_steps"] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(history.history["loss"]))  # the skipped batch left the mean
    assert _finite(model)
    assert model.evaluate(x[64:], y[64:], verbose=0) < 0.1 * _trivial_loss(y)


@EXECUTION
def test_nan_weights_under_a_finite_masked_loss_are_caught_at_that_step(run_eagerly):
    x, y = _regression(nan_row=100)  # batch 3
    model = _linear(keras.optimizers.SGD(0.01), run_eagerly, loss=_masked_mse)
    monitor = StabilityMonitor(snapshot_every=1, verbose=0)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    first = monitor.events[0]
    assert (first["batch"], "weights" in first["what"]) == (3, True), monitor.events
    assert _finite(model)


@EXECUTION
def test_raise_policy_restores_and_raises(run_eagerly):
    x, y = _regression(nan_row=100)
    model = _linear(keras.optimizers.SGD(0.01), run_eagerly)
    monitor = StabilityMonitor(policy="raise", snapshot_every=1)
    with pytest.raises(NonFiniteError, match=r"(?s)batch 3.*What to check"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    assert _finite(model)


@EXECUTION
@pytest.mark.parametrize("policy", ["warn", "count"])
def test_warn_and_count_leave_training_alone(policy, run_eagerly):
    x, y = _regression(nan_row=100)
    model = _linear(keras.optimizers.SGD(0.01), run_eagerly)
    monitor = StabilityMonitor(policy=policy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[monitor]
        )
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert monitor.events and monitor.events[0]["batch"] == 3
    if policy == "warn":
        assert runtime and "What to check" in str(runtime[0].message)
    else:
        assert not runtime
        assert history.history["nonfinite_events"][0] >= 1


def test_gives_up_after_max_retries_with_what_to_check():
    x, y = _regression()
    y[:] = np.inf  # no learning rate helps
    model = _linear(keras.optimizers.SGD(0.01), False)
    monitor = StabilityMonitor(max_retries=2, verbose=0)
    with pytest.raises(NonFiniteError, match=r"(?s)after 2 recoveries in a row.*What to check"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    assert _finite(model)


def test_a_learning_rate_schedule_cannot_be_lowered():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    x, y = _regression()
    model = _linear(keras.optimizers.SGD(schedule), False)
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[StabilityMonitor()])


def test_clean_training_logs_what_keras_logs():
    x, y = _regression()
    model = _linear(keras.optimizers.SGD(0.01), False)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[StabilityMonitor()])
    assert set(history.history) == {"loss"}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"policy": "stop"}, ValueError, r"Received: policy='stop'"),
        ({"policy": 1}, TypeError, r"Received: policy=1"),
        ({"lr_factor": 1.0}, ValueError, r"lr_factor=1\.0"),
        ({"lr_factor": float("nan")}, ValueError, r"lr_factor=nan"),
        ({"lr_factor": "0.5"}, TypeError, r"lr_factor='0\.5'"),
        ({"max_retries": 0}, ValueError, r"max_retries=0"),
        ({"max_retries": 2.0}, TypeError, r"max_retries=2\.0"),
        ({"snapshot_every": 0}, ValueError, r"snapshot_every=0"),
        ({"snapshot_every": True}, TypeError, r"snapshot_every=True"),
        ({"spike_factor": 1.0}, ValueError, r"spike_factor=1\.0"),
        ({"spike_window": 2}, ValueError, r"spike_window=2"),
        ({"check_weights_every": 0}, ValueError, r"check_weights_every=0"),
        ({"check_weights_every": "often"}, TypeError, r"check_weights_every='often'"),
        ({"log_counters": "yes"}, TypeError, r"log_counters='yes'"),
        ({"verbose": "1"}, TypeError, r"verbose=.1."),
        ({"report_dir": 3}, TypeError, r"report_dir=3"),
        ({"data": np.zeros(3)}, ValueError, r"`data`.*Received"),
        ({"batch_size": 0}, ValueError, r"batch_size=0"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        StabilityMonitor(**kwargs)


@EXECUTION
def test_a_raising_finite_check_leaves_the_last_good_state(run_eagerly):
    from xstable.layers import FiniteCheck

    x, y = _regression(nan_row=100)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), FiniteCheck("raise", name="check"), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse", run_eagerly=run_eagerly)
    with pytest.raises(NonFiniteError, match="FiniteCheck `check`"):
        model.fit(
            x,
            y,
            batch_size=32,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[StabilityMonitor(verbose=0)],
        )
    assert _finite(model)


@EXECUTION
def test_under_a_guard_the_masked_loss_nan_gradient_is_skipped_not_rolled_back(run_eagerly):
    # check_weights_every="auto" reads no weights under a GuardedOptimizer: the guard skips
    # the step whose gradient is NaN, so the weights never see it.
    x, y = _regression(nan_row=100)
    model = _linear(GuardedOptimizer(keras.optimizers.SGD(0.01)), run_eagerly, loss=_masked_mse)
    monitor = StabilityMonitor(verbose=0)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[monitor])
    assert monitor.events == [] and monitor.recoveries == 0
    assert model.optimizer.stats()["skipped_steps"] == 2
    assert _finite(model)


@EXECUTION
def test_safe_loss_nan_row_is_caught_by_the_defaults_within_one_step(run_eagerly):
    # SafeLoss leaves the NaN row out of its value, but the gradient through that row puts
    # NaN into the kernel. The defaults read no weights per batch: the next step's loss is
    # NaN (every prediction is NaN, every sample left out), and the kept state, checked
    # finite on its host copy, comes back.
    from xstable.losses import SafeLoss

    x, y = _regression(nan_row=100)  # batch 3
    model = _linear(keras.optimizers.SGD(0.01), run_eagerly, loss=SafeLoss("mse"))
    monitor = StabilityMonitor(verbose=0)
    history = model.fit(
        x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[monitor]
    )
    first = monitor.events[0]
    assert first["batch"] in (3, 4), monitor.events
    assert "weights hold NaN" in first["what"], first
    assert monitor.report["restored"]["done"]
    assert _finite(model)
    assert all(np.isfinite(history.history["loss"]))


@EXECUTION
def test_a_batch_of_invalid_targets_is_skipped_under_a_guard_and_named_without(run_eagerly):
    from xstable.losses import SafeBinaryCrossentropy

    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    y[32:64] = 2.0  # batch 1: every target invalid, the loss of that batch is undefined
    keras.utils.set_random_seed(0)
    guarded = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    guarded.compile(
        GuardedOptimizer(keras.optimizers.Adam(0.01)),
        SafeBinaryCrossentropy(),
        run_eagerly=run_eagerly,
    )
    monitor = StabilityMonitor(verbose=0)
    history = guarded.fit(
        x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[monitor]
    )
    assert monitor.events == [] and monitor.skipped_steps == 2
    assert guarded.optimizer.stats()["skipped_steps"] == 2
    assert all(np.isfinite(history.history["loss"])) and _finite(guarded)

    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    plain.compile(keras.optimizers.Adam(0.01), SafeBinaryCrossentropy(), run_eagerly=run_eagerly)
    monitor = StabilityMonitor(policy="raise", verbose=0)
    with pytest.raises(NonFiniteError, match=r"batch 1, the loss is nan.*every target invalid"):
        plain.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    assert _finite(plain)


@EXECUTION
def test_the_report_names_the_offending_rows_and_is_written(run_eagerly, tmp_path):
    import json

    x, y = _regression(nan_row=100)  # batch 3: rows 96..127
    model = _linear(keras.optimizers.SGD(0.01), run_eagerly)
    monitor = StabilityMonitor(
        snapshot_every=1, report_dir=tmp_path, data=(x, y), batch_size=32, verbose=0
    )
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    report = json.loads((tmp_path / "nonfinite_report.json").read_text())
    assert report == monitor.report
    assert report["action"] == "recovered"
    assert report["trigger"]["batch"] == 3 and report["offending_batch"]["rows"] == [96, 128]
    assert report["data_nonfinite_rows"] == {"x": {"count": 1, "first_rows": [100]}}
    assert report["restored"]["exact_state_before_failing_step"]
    assert report["locate_nonfinite"]["data_rows"] == [100]
    assert "rows [100] of `data`" in (tmp_path / "nonfinite_report.txt").read_text()


def test_a_warning_guard_warns_through_the_monitor_and_training_goes_on():
    x, y = _regression()
    x[:] = np.nan  # every step is skipped
    optimizer = GuardedOptimizer(
        keras.optimizers.SGD(0.01), max_consecutive_skips=2, on_max_skips="warn"
    )
    model = _linear(optimizer, False)
    monitor = StabilityMonitor(verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[monitor])
    given_up = [w for w in caught if "steps in a row" in str(w.message)]
    assert len(given_up) == 1, [str(w.message) for w in caught]
    assert len(history.history["loss"]) == 2 and monitor.events == []
    assert _finite(model)


def test_a_snapshot_refresh_keeps_one_host_copy_and_never_a_non_finite_one():
    import tracemalloc

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,))] + [keras.layers.Dense(64) for _ in range(4)] + [keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    x = np.random.default_rng(0).normal(size=(64, 64)).astype("float32")
    monitor = StabilityMonitor(verbose=0)
    model.fit(x, x[:, :1], batch_size=64, epochs=1, verbose=0, callbacks=[monitor])
    kept_weights, kept_slots = monitor.last_good_state
    size = sum(v.nbytes for v in kept_weights + kept_slots)
    del kept_weights, kept_slots

    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    assert monitor._take_snapshot(model)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Refreshed in place: at most a variable's temporary, not a second copy of the state.
    assert peak - before < 0.5 * size, (peak - before, size)

    good = [v.copy() for v in monitor.last_good_state[0]]
    model.layers[0].kernel.assign(np.full((64, 64), np.nan, "float32"))
    assert not monitor._take_snapshot(model)
    for kept, before_nan in zip(monitor.last_good_state[0], good, strict=True):
        assert kept.tobytes() == before_nan.tobytes()

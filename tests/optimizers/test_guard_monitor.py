"""A GuardedOptimizer's "raise" policy enforced from the host; the deprecated GuardMonitor."""

import warnings

import keras
import numpy as np
import pytest

from tests.optimizers.test_guarded_optimizer import _assert_bit_identical, _data, _model, _snapshot
from xstable.callbacks import StabilityMonitor
from xstable.errors import NonFiniteError
from xstable.optimizers import GuardedOptimizer, GuardMonitor
from xstable.optimizers.guarded_optimizer import find_guarded_optimizer


def test_monitor_raises_when_every_batch_is_nan():
    x, y = _data()
    x[:] = np.nan
    model = _model()
    model.compile(optimizer=GuardedOptimizer("sgd", max_consecutive_skips=2), loss="mse")
    before = _snapshot(model.weights)
    monitor = StabilityMonitor(policy="raise")
    with pytest.raises(NonFiniteError, match="max_consecutive_skips=2"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    _assert_bit_identical(before, model.weights, "weights after all-NaN batches")


def test_guard_monitor_is_a_deprecated_alias_that_still_raises():
    x, y = _data()
    x[:] = np.nan
    model = _model()
    model.compile(optimizer=GuardedOptimizer("sgd", max_consecutive_skips=2), loss="mse")
    with pytest.warns(DeprecationWarning, match="StabilityMonitor"):
        monitor = GuardMonitor()
    with pytest.raises(NonFiniteError, match="max_consecutive_skips=2"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])


def test_monitor_needs_a_guarded_optimizer():
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    x, y = _data()
    with pytest.raises(ValueError, match="GuardedOptimizer"):
        with pytest.warns(DeprecationWarning):
            monitor = GuardMonitor()
        model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])


def test_stability_monitor_logs_the_counters_per_epoch():
    x, y = _data(nan_row=40)
    model = _model()
    model.compile(optimizer=GuardedOptimizer("adam"), loss="mse")
    batch_logs = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs))
    )
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        shuffle=False,
        callbacks=[StabilityMonitor(), record],
    )
    assert history.history["skipped_steps"] == [1, 2]
    assert all("skipped_steps" not in logs for logs in batch_logs)


def test_finds_the_guard_inside_a_loss_scale_optimizer():
    guard = GuardedOptimizer("sgd")
    assert find_guarded_optimizer(keras.optimizers.LossScaleOptimizer(guard)) is guard
    assert find_guarded_optimizer(keras.optimizers.SGD()) is None
    assert find_guarded_optimizer(None) is None


def test_every_batch_must_be_a_bool():
    with pytest.raises(TypeError, match="every_batch=1"), pytest.warns(DeprecationWarning):
        GuardMonitor(every_batch=1)


def _unchecked_warnings(caught):
    return [w for w in caught if "a compiled training step cannot raise" in str(w.message)]


def test_raise_policy_without_a_monitor_warns_once_that_it_cannot_raise():
    x, y = _data()
    x[:] = np.nan
    model = _model()
    model.compile(optimizer=GuardedOptimizer("sgd", max_consecutive_skips=2), loss="mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    messages = _unchecked_warnings(caught)
    assert len(messages) == 1, [str(w.message) for w in caught]
    assert "StabilityMonitor" in str(messages[0].message)
    assert int(model.optimizer.stats()["skipped_steps"]) > 2  # skipped, as the warning said


@pytest.mark.parametrize(
    "optimizer_kwargs",
    [{}, {"on_max_skips": "count"}, {"on_max_skips": "replace"}, {"max_consecutive_skips": None}],
    ids=["with-monitor", "count-policy", "replace-policy", "no-limit"],
)
def test_no_cannot_raise_warning_when_nothing_needs_raising(optimizer_kwargs):
    x, y = _data()
    model = _model()
    model.compile(optimizer=GuardedOptimizer("sgd", **optimizer_kwargs), loss="mse")
    callbacks = [StabilityMonitor()] if not optimizer_kwargs else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
    assert _unchecked_warnings(caught) == []


@pytest.mark.parametrize("run_eagerly", [False, True], ids=["compiled", "eager"])
def test_defaults_need_no_callback_and_warn_nothing(run_eagerly):
    x, y = _data()
    x[:] = np.nan  # every step is skipped
    model = _model()
    model.compile(optimizer=GuardedOptimizer("sgd"), loss="mse", run_eagerly=run_eagerly)
    before = _snapshot(model.weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert set(history.history) == {"loss"}
    assert model.optimizer.stats()["skipped_steps"] == 2 * len(x) // 16
    _assert_bit_identical(before, model.weights, "weights after all-NaN batches")

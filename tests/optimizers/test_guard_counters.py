"""GuardCounters: a GuardedOptimizer's counters in fit logs and History when listed as a metric."""

import keras
import numpy as np
import pytest

from tests.optimizers.test_guarded_optimizer import _data, _model
from xstable.callbacks import StabilityMonitor
from xstable.optimizers import GuardCounters, GuardedOptimizer
from xstable.optimizers.guard_counters import COUNTER_NAMES

_TORCH_COMPILE = "jit_compile=True on torch means torch.compile (minutes on CPU)"
JIT_MODES = pytest.mark.parametrize(
    "jit_compile",
    ["auto", pytest.param(True, marks=pytest.mark.skip_backend("torch", reason=_TORCH_COMPILE))],
    ids=["default", "jit"],
)


def _compile(model, optimizer, **kwargs):
    model.compile(optimizer, loss="mse", metrics=[GuardCounters(optimizer)], **kwargs)


def _fit_recording_batches(model, x, y, **kwargs):
    batch_logs = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs))
    )
    history = model.fit(
        x, y, batch_size=16, verbose=0, shuffle=False, callbacks=[record], **kwargs
    )
    return history, batch_logs


@JIT_MODES
def test_counters_in_history_and_every_batch_when_listed_as_a_metric(jit_compile):
    # Row 20 is in batch 1 of 4: one skipped step per epoch.
    x, y = _data(nan_row=20)
    model = _model()
    _compile(model, GuardedOptimizer("adam"), jit_compile=jit_compile)
    history, batch_logs = _fit_recording_batches(model, x, y, epochs=2)

    assert history.history["skipped_steps"] == [1, 2]
    assert history.history["consecutive_skips"] == [0, 0]
    assert history.history["lr_scale"] == [1, 1]
    # Batch logs are the values after each step, on every backend (JAX included).
    assert [logs["skipped_steps"] for logs in batch_logs] == [0, 1, 1, 1, 1, 2, 2, 2]
    assert [logs["consecutive_skips"] for logs in batch_logs] == [0, 1, 0, 0, 0, 1, 0, 0]
    assert np.isnan(batch_logs[1]["grad_norm"]) and np.isfinite(batch_logs[2]["grad_norm"])
    stats = model.optimizer.stats()
    assert batch_logs[-1]["grad_norm"] == pytest.approx(stats["grad_norm"], rel=1e-6)
    assert history.history["grad_norm"][-1] == pytest.approx(stats["grad_norm"], rel=1e-6)


def test_evaluate_and_validation_get_no_counters():
    x, y = _data()
    model = _model()
    _compile(model, GuardedOptimizer("adam"))
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert "skipped_steps" in history.history
    assert not [key for key in history.history if key.startswith("val_") and key != "val_loss"]
    # No optimizer step in evaluate: it still returns the loss alone, not a list.
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_train_on_batch_reports_the_step_like_any_metric():
    x, y = _data()
    x[:16] = np.nan
    model = _model()
    _compile(model, GuardedOptimizer("sgd"))
    logs = model.train_on_batch(x[:16], y[:16], return_dict=True)
    assert (logs["skipped_steps"], logs["consecutive_skips"]) == (1, 1)
    logs = model.train_on_batch(x[16:32], y[16:32], return_dict=True)
    assert (logs["skipped_steps"], logs["consecutive_skips"]) == (1, 0)


def test_by_default_the_logs_and_evaluate_are_as_keras_makes_them():
    x, y = _data(nan_row=20)
    model = _model()
    model.compile(GuardedOptimizer("adam"), loss="mse")
    history, batch_logs = _fit_recording_batches(model, x, y, epochs=1)
    assert set(history.history) == {"loss"}
    assert all(set(logs) == {"loss"} for logs in batch_logs)
    assert model.optimizer.stats()["skipped_steps"] == 1
    assert isinstance(model.evaluate(x[32:], y[32:], verbose=0), float)


def test_counters_need_a_guarded_optimizer():
    with pytest.raises(TypeError, match=r"`optimizer` must be a `xstable.optimizers.Guarded"):
        GuardCounters(keras.optimizers.Adam())


@pytest.mark.skip_backend(
    "jax",
    reason="inside a LossScaleOptimizer the guard runs in the loss scaler's lax.cond on JAX, "
    "so its values cannot reach the step's logs (documented; StabilityMonitor covers it)",
)
def test_inside_a_loss_scale_optimizer_the_counters_still_show():
    x, y = _data(nan_row=20)
    model = _model()
    guard = GuardedOptimizer("sgd")
    _compile(model, keras.optimizers.LossScaleOptimizer(guard))
    history, batch_logs = _fit_recording_batches(model, x, y, epochs=1)
    # The loss scaler skips the NaN step itself, before the guard sees it.
    assert history.history["skipped_steps"] == [0]
    assert [logs["skipped_steps"] for logs in batch_logs] == [0, 0, 0, 0]
    assert history.history["grad_norm"][-1] == pytest.approx(guard.stats()["grad_norm"], rel=1e-6)
    assert isinstance(model.evaluate(x[:16], y[:16], verbose=0), float)


@pytest.mark.only_backend("jax", reason="the JAX-specific limit of the test above")
def test_inside_a_loss_scale_optimizer_on_jax_logs_stay_clean():
    x, y = _data(nan_row=20)
    model = _model()
    model.compile(keras.optimizers.LossScaleOptimizer(GuardedOptimizer("sgd")), loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert "skipped_steps" not in history.history
    history = model.fit(
        x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[StabilityMonitor()]
    )
    assert history.history["skipped_steps"] == [0]


def test_recompiling_with_another_optimizer_drops_the_counters():
    x, y = _data()
    model = _model()
    _compile(model, GuardedOptimizer("adam"))
    model.fit(x, y, epochs=1, verbose=0)
    model.compile("adam", loss="mse")
    history = model.fit(x, y, epochs=1, verbose=0)
    assert set(history.history) == {"loss"}


def test_two_models_each_get_their_own_optimizers_counters():
    x, y = _data(nan_row=20)
    clean_x, _ = _data()
    first, second = _model(), _model()
    _compile(first, GuardedOptimizer("sgd"))
    _compile(second, GuardedOptimizer("sgd"))
    first_history = first.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    second_history = second.fit(clean_x, y, batch_size=16, epochs=1, verbose=0)
    assert first_history.history["skipped_steps"] == [1]
    assert second_history.history["skipped_steps"] == [0]


def test_stability_monitor_alone_writes_the_same_values():
    x, y = _data(nan_row=20)
    model = _model()
    model.compile(GuardedOptimizer("adam"), loss="mse")
    history = model.fit(
        x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[StabilityMonitor()]
    )
    assert history.history["skipped_steps"] == [1, 2]
    assert history.history["consecutive_skips"] == [0, 0]


def test_saved_and_loaded_model_keeps_reporting(tmp_path):
    x, y = _data(nan_row=20)
    model = _model()
    _compile(model, GuardedOptimizer("adam"))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "guarded.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    # The saved compile configuration names the metric, not the optimizer it reads: the
    # loaded model lists it again for its own optimizer.
    _compile(loaded, loaded.optimizer)
    history = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert set(COUNTER_NAMES) <= set(history.history)
    assert history.history["skipped_steps"] == [2]  # the counter was saved with the optimizer


def test_a_config_written_with_log_counters_still_loads():
    config = GuardedOptimizer("adam").get_config()
    config["log_counters"] = True
    restored = GuardedOptimizer.from_config(config)
    assert "log_counters" not in restored.get_config()
    assert restored.max_consecutive_skips is None


def test_guard_counters_config_round_trips():
    metric = GuardCounters(GuardedOptimizer("adam"), name="guard")
    assert GuardCounters.from_config(metric.get_config()).name == "guard"


@pytest.mark.skip_backend("tensorflow", reason="skip_mode chooses between torch code paths")
@pytest.mark.skip_backend("jax", reason="skip_mode chooses between torch code paths")
def test_torch_branch_logs_host_values_equal_to_the_select_paths_tensors():
    # torch CPU's branch path hands the logs Python floats it read on the host; the select
    # path hands tensors. Same data, same weights: the batch logs must be equal exactly,
    # through a skipped step (row 20, batch 1) and with clipping active.
    x, y = _data(nan_row=20)
    initial = _model().get_weights()
    logs = {}
    for mode in ("branch", "select"):
        model = _model()
        model.set_weights(initial)
        _compile(model, GuardedOptimizer("adam", global_clipnorm=0.5, skip_mode=mode))
        _, logs[mode] = _fit_recording_batches(model, x, y, epochs=2)
        stats = model.optimizer.stats()
        assert logs[mode][-1]["grad_norm"] == stats["grad_norm"]
        assert logs[mode][-1]["skipped_steps"] == stats["skipped_steps"] == 2
    for branch, select in zip(logs["branch"], logs["select"], strict=True):
        for name in COUNTER_NAMES:
            assert branch[name] == select[name] or (
                np.isnan(branch[name]) and np.isnan(select[name])
            ), name

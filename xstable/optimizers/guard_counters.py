"""`GuardCounters`: the metric that shows a GuardedOptimizer's counters in `fit` logs."""

import weakref

import keras
from keras import ops

from xstable import backend

__all__ = ["GuardCounters", "COUNTER_NAMES"]

COUNTER_NAMES = ("skipped_steps", "consecutive_skips", "grad_norm", "lr_scale")


def _float32_copy(value):
    if keras.backend.standardize_dtype(value.dtype) == "float32":
        return ops.copy(value)
    return ops.cast(value, "float32")


@keras.saving.register_keras_serializable(package="xstable")
class GuardCounters(keras.metrics.Metric):
    """Reports `skipped_steps`, `consecutive_skips`, `grad_norm` and `lr_scale` in `fit` logs.

    List it in `compile(metrics=[...])` to have a `GuardedOptimizer`'s counters in the
    progress bar, `History`, `CSVLogger` and TensorBoard. The metric has no state of its
    own: its `result()` returns the values the optimizer's last step left, and only in the
    logs of a training step; evaluation, which runs no optimizer step, gets no counters (so
    `evaluate()` returns what it returns without it).

    The values are those after the step (`grad_norm`: the global gradient norm before
    clipping). On JAX they come straight from the traced step's new optimizer state, so batch
    logs are exact there too. Inside a `LossScaleOptimizer` (mixed precision) on JAX the
    guard runs inside the loss scaler's own `lax.cond`, where its values cannot reach the
    step's logs: there pass `xstable.callbacks.StabilityMonitor()` to `fit`, which writes
    the counters into the logs from the host.

    Args:
        optimizer: The `GuardedOptimizer`, or an optimizer wrapping one (a
            `LossScaleOptimizer`). `None` (what a reloaded model's compile configuration
            holds) reports nothing.
        name: String, the metric's name.

    Raises:
        TypeError: If `optimizer` holds no `GuardedOptimizer`.

    Example:

    ```python
    optimizer = xstable.optimizers.GuardedOptimizer("adam")
    model.compile(optimizer, "mse", metrics=[xstable.optimizers.GuardCounters(optimizer)])
    model.fit(x, y).history["skipped_steps"]
    ```
    """

    def __init__(self, optimizer=None, name="guard_counters"):
        super().__init__(name=name)
        from xstable.optimizers.guarded_optimizer import find_guarded_optimizer

        guard = find_guarded_optimizer(optimizer)
        if optimizer is not None and guard is None:
            raise TypeError(
                "`optimizer` must be a `xstable.optimizers.GuardedOptimizer` (or an optimizer "
                f"wrapping one). Received: optimizer={optimizer!r}. Pass the optimizer you "
                "give to `compile`."
            )
        if guard is not None:
            object.__setattr__(guard, "_counters_wanted", True)
            if optimizer is not guard:
                object.__setattr__(guard, "_wrapped", True)
        # A weak reference, not an attribute Keras would track or save.
        self._optimizer = (lambda: None) if guard is None else weakref.ref(guard)
        # The counters of the last training step, as metric state: Keras's JAX trainer
        # carries them out of the compiled step, so the epoch logs read them after it.
        self._kept = {
            name: self.add_variable((), initializer="zeros", dtype="float32", name=name)
            for name in COUNTER_NAMES
        }
        self._kept_any = self.add_variable((), initializer="zeros", dtype="float32", name="kept")

    def update_state(self, *args, **kwargs):
        """Keeps the counters the optimizer's step just left (a training step only)."""
        del args, kwargs
        optimizer = self._optimizer()
        values = None if optimizer is None else optimizer._peek_step_counters()
        if values is None:
            return
        for name in COUNTER_NAMES:
            self._kept[name].assign(ops.cast(values[name], "float32"))
        self._kept_any.assign(ops.ones((), "float32"))

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))
        optimizer = self._optimizer()
        if optimizer is not None:
            optimizer._forget_step_counters()

    def result(self):
        optimizer = self._optimizer()
        values = None if optimizer is None else optimizer._take_step_counters()
        if values is not None:
            # New tensors, not the variables: TensorFlow must not put the variables
            # themselves into the logs, and torch assigns in place. A cast to another dtype
            # already makes a new tensor; only float32 values need the copy. Python floats
            # (torch CPU's branch path reads them on the host) go into the logs as is.
            return {
                name: values[name]
                if isinstance(values[name], float)
                else _float32_copy(values[name])
                for name in COUNTER_NAMES
            }
        # Outside a traced step (Keras's epoch-end read, after the state came back from the
        # device): the kept values of the last training step since the last reset. A test
        # step, traced or not, ran no optimizer step and reports nothing.
        if not backend.is_concrete(self._kept_any.value):
            return {}
        if float(ops.convert_to_numpy(self._kept_any.value)) == 0.0:
            return {}
        return {name: ops.copy(self._kept[name].value) for name in COUNTER_NAMES}

    def get_config(self):
        return {"name": self.name}

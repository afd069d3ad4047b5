"""`GuardCounters`: the metric that shows a GuardedOptimizer's counters in `fit` logs."""

import weakref

import keras
from keras import ops

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

    def update_state(self, *args, **kwargs):
        """Does nothing: the optimizer's own step updates the counters."""
        del args, kwargs

    def reset_state(self):
        optimizer = self._optimizer()
        if optimizer is not None:
            optimizer._forget_step_counters()

    def result(self):
        optimizer = self._optimizer()
        values = None if optimizer is None else optimizer._take_step_counters()
        if values is None:
            return {}
        # New tensors, not the variables: TensorFlow must not put the variables themselves
        # into the logs, and torch assigns in place. A cast to another dtype already makes a
        # new tensor; only float32 values need the copy (one eager dispatch each, not two).
        # Python floats (torch CPU's branch path reads them on the host) go into the logs as is.
        return {
            name: values[name] if isinstance(values[name], float) else _float32_copy(values[name])
            for name in COUNTER_NAMES
        }

    def get_config(self):
        return {"name": self.name}

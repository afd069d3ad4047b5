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


class GuardCounters(keras.metrics.Metric):
    """Reports `skipped_steps`, `consecutive_skips`, `grad_norm` and `lr_scale` in `fit` logs.

    A `GuardedOptimizer` attaches one to the model it trains (see `xstable._model_reporting`),
    so the counters reach the progress bar, `History`, `CSVLogger` and TensorBoard with no
    callback. The metric has no state of its own: its `result()` returns the values the
    optimizer's last step left, and only in the logs of a training step; evaluation, which
    runs no optimizer step, gets no counters (so `evaluate()` keeps returning the loss alone).

    The values are those after the step (`grad_norm`: the global gradient norm before
    clipping). On JAX they come straight from the traced step's new optimizer state, so batch
    logs are exact there too.
    """

    def __init__(self, optimizer, name="guard_counters"):
        super().__init__(name=name)
        # A weak reference, not an attribute Keras would track or save.
        self._optimizer = weakref.ref(optimizer)

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

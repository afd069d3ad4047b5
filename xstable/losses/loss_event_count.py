"""`LossEventCount`: a metric that a loss feeds with counts of events it handled."""

import keras
from keras import ops

from xstable import _counter_reset, backend

__all__ = ["LossEventCount"]


@keras.saving.register_keras_serializable(package="xstable")
class LossEventCount(keras.metrics.Metric):
    """Counts events reported by a loss (masked non-finite losses, invalid targets).

    Each xstable loss owns these counters (`loss.counters`). Listed in
    `compile(metrics=...)` like any Keras metric, Keras resets them every epoch, shows them in
    the progress bar, logs and History, and on JAX carries their variables through the
    stateless train step, so the loss's updates persist. Not listed, nothing reports them and
    `fit`/`evaluate` return exactly what they return with the Keras loss.

    `update_state(y_true, y_pred)` does nothing: the owning loss calls `record(count)` while it
    computes, which avoids computing the loss twice.

    Args:
        name: String. The key under which the count appears in logs and history.
        dtype: Metric dtype. Defaults to `"float32"` (exact up to 2**24 events per epoch).

    Example:

    ```python
    loss = xstable.losses.SafeLoss("mse")
    model.compile(optimizer="adam", loss=loss, metrics=loss.counters)
    history = model.fit(x, y)
    history.history["safe_mean_squared_error_nonfinite"]
    ```
    """

    def __init__(self, name="loss_event_count", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype=dtype)

    def update_state(self, y_true=None, y_pred=None, sample_weight=None):
        """Does nothing: the owning loss reports its events through `record`."""
        del y_true, y_pred, sample_weight

    def record(self, count, like=None):
        """Adds `count` events, if the update can persist in the current computation.

        Args:
            count: Scalar tensor or number.
            like: A tensor from the computation recording the count (pass the count itself);
                on JAX it tells a traced step whose state holds this metric from one that
                does not.

        Returns:
            `True` if the count was recorded, `False` if this traced computation does not carry
            the metric's state (JAX, metric not listed in `compile(metrics=...)`).
        """
        if like is not None and not backend.update_persists(self.count, like):
            return False
        dtype = getattr(count, "dtype", None)
        if dtype is None or keras.backend.standardize_dtype(dtype) != self.dtype:
            count = ops.cast(count, self.dtype)
        self.count.assign_add(count)
        return True

    def result(self):
        # A new tensor, not the variable: on TF `convert_to_tensor` hands back the variable
        # itself and torch updates it in place, so a result read earlier would change.
        return ops.copy(self.count.value)

    def reset_state(self):
        _counter_reset.reset_to_zero(self.count)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

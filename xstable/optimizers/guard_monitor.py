"""`GuardMonitor`: puts a GuardedOptimizer's counters into `fit` logs and enforces its policy."""

import keras

from xstable.optimizers.guarded_optimizer import GuardedOptimizer

__all__ = ["GuardMonitor", "find_guarded_optimizer"]


def find_guarded_optimizer(optimizer):
    """Returns the GuardedOptimizer in `optimizer` (itself or inside a LossScaleOptimizer).

    Args:
        optimizer: A Keras optimizer or `None`.

    Returns:
        The `GuardedOptimizer`, or `None` when there is none.
    """
    while optimizer is not None:
        if isinstance(optimizer, GuardedOptimizer):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


class GuardMonitor(keras.callbacks.Callback):
    """Adds `skipped_steps`, `consecutive_skips`, `grad_norm` (and `lr_scale`) to `fit` logs.

    Keras builds `fit` logs from the model's metrics, and an optimizer has no handle on the
    model, so the counters of a `GuardedOptimizer` reach the logs through this callback: after
    every batch and epoch it reads them and writes them into the `logs` dict, so the progress
    bar, `History`, `CSVLogger` and TensorBoard (pass this callback before them) see them. It
    also calls `GuardedOptimizer.check()`, which raises `xstable.errors.NonFiniteError` when the
    `"raise"` policy's limit is passed — compiled steps cannot raise by themselves.

    On JAX, model and optimizer state live outside the Keras variables during `fit`; the
    callback asks the trainer to sync them (`model.jax_state_sync()`, as Keras's own callbacks
    do) before reading. Reading the counters waits for the device once per batch.

    Args:
        every_batch: Bool. Read and log the counters after every batch (default). With
            `False` they are read at epoch end only, and the `"raise"` policy is checked then.

    Example:

    ```python
    model.compile(optimizer=xstable.optimizers.GuardedOptimizer("adam"), loss="mse")
    history = model.fit(x, y, callbacks=[xstable.optimizers.GuardMonitor()])
    history.history["skipped_steps"]
    ```
    """

    def __init__(self, every_batch=True):
        super().__init__()
        if not isinstance(every_batch, bool):
            raise TypeError(f"`every_batch` must be a bool. Received: every_batch={every_batch!r}.")
        self.every_batch = every_batch

    def _guard(self):
        guard = find_guarded_optimizer(getattr(self.model, "optimizer", None))
        if guard is None:
            raise ValueError(
                "GuardMonitor needs a model compiled with a "
                "`xstable.optimizers.GuardedOptimizer`. Received: optimizer="
                f"{getattr(self.model, 'optimizer', None)!r}."
            )
        return guard

    def _record(self, logs):
        guard = self._guard()
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        if logs is not None:
            logs.update(guard.stats())
        guard.check()

    def on_train_begin(self, logs=None):
        # Before the first step is traced: tells the optimizer its "raise" policy is served.
        self._guard()._host_checks = True

    def on_train_batch_end(self, batch, logs=None):
        if self.every_batch:
            self._record(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._record(logs)

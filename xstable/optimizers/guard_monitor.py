"""`GuardMonitor`: enforces a GuardedOptimizer's "raise" policy from the host and logs its counters."""

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
    """Raises a GuardedOptimizer's `"raise"` error at batch end, and logs its counters.

    The counters (`skipped_steps`, `consecutive_skips`, `grad_norm`, `lr_scale`) reach `fit`
    logs by themselves (the optimizer attaches a `GuardCounters` metric to the model). This
    callback adds what a compiled step cannot do: after every batch it calls
    `GuardedOptimizer.check()`, which raises `xstable.errors.NonFiniteError` when the
    `"raise"` policy's limit is passed, and it writes the counters into `logs` itself, which
    also covers JAX under a `LossScaleOptimizer` (mixed precision), where the metric cannot
    see them.

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

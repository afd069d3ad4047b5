"""`GuardMonitor`: deprecated; `xstable.callbacks.StabilityMonitor` does its work."""

import warnings

from xstable.callbacks.stability_monitor import StabilityMonitor
from xstable.optimizers.guarded_optimizer import find_guarded_optimizer

__all__ = ["GuardMonitor", "find_guarded_optimizer"]


class GuardMonitor(StabilityMonitor):
    """Deprecated: pass `xstable.callbacks.StabilityMonitor(policy="raise")` to `fit`.

    A `StabilityMonitor` with `policy="raise"` that checks neither weights nor spikes, needs
    a `GuardedOptimizer`, and with `every_batch=True` also writes the guard's counters into
    every batch's logs.

    Args:
        every_batch: Bool. Also log the counters after every batch (default).
    """

    def __init__(self, every_batch=True):
        warnings.warn(
            "`xstable.optimizers.GuardMonitor` is deprecated: pass "
            "`callbacks=[xstable.callbacks.StabilityMonitor()]` to `fit`, or list "
            "`xstable.optimizers.GuardCounters(optimizer)` in `compile(metrics=...)` for the "
            "counters alone.",
            DeprecationWarning,
            stacklevel=2,
        )
        if not isinstance(every_batch, bool):
            raise TypeError(f"`every_batch` must be a bool. Received: every_batch={every_batch!r}.")
        super().__init__(policy="raise", check_weights_every=None, verbose=0)
        self.every_batch = every_batch

    def on_train_begin(self, logs=None):
        guard = find_guarded_optimizer(getattr(self.model, "optimizer", None))
        if guard is None:
            raise ValueError(
                "GuardMonitor needs a model compiled with a "
                "`xstable.optimizers.GuardedOptimizer`. Received: optimizer="
                f"{getattr(self.model, 'optimizer', None)!r}."
            )
        super().on_train_begin(logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_batch and logs is not None:
            self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
            logs.update(self._guard.stats())
        super().on_train_batch_end(batch, logs)

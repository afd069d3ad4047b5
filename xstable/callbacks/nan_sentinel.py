"""`NaNSentinel`: deprecated; `xstable.callbacks.StabilityMonitor` does its work."""

import warnings

from xstable import _validation
from xstable.callbacks._report import REPORT_JSON_NAME, REPORT_TEXT_NAME
from xstable.callbacks.stability_monitor import StabilityMonitor

__all__ = ["NaNSentinel", "REPORT_JSON_NAME", "REPORT_TEXT_NAME"]

_ON_NONFINITE = ("stop", "raise")
_KEEP_LAST_GOOD = ("auto", "device", "host")


class NaNSentinel(StabilityMonitor):
    """Deprecated: pass `xstable.callbacks.StabilityMonitor(policy="raise")` to `fit`.

    A `StabilityMonitor` with `policy="raise"` and `snapshot_every=1` that also treats a
    non-finite metric (and `val_*` value) as a failure. At the first failure it restores the
    last finite state (the one before the failing step), writes the monitor's report, and
    stops training (`on_nonfinite="stop"`: `fit` returns normally) or raises
    `xstable.NonFiniteError` (`"raise"`). `triggered` says whether it fired.

    The copies are host copies, whatever `keep_last_good` says (the monitor checks them for
    NaN on the host, which a device copy would need a read for).

    Args:
        report_dir: String, `os.PathLike` or `None`. Directory of the written reports.
        on_nonfinite: `"stop"` or `"raise"`.
        data: `None` or `(x, y)` / `(x, y, sample_weight)`: the training data, to name and
            replay the offending batch.
        batch_size: Int >= 1. The `batch_size` given to `fit`.
        snapshot_every: Int >= 1. Good steps between two copies of the state.
        keep_last_good: `"auto"`, `"device"` or `"host"`; accepted for compatibility.
        include_optimizer: Bool. Also copy and restore the optimizer's variables.
        verbose: 0 or 1.
    """

    def __init__(
        self,
        report_dir="xstable_nan_report",
        on_nonfinite="stop",
        data=None,
        batch_size=32,
        snapshot_every=1,
        keep_last_good="auto",
        include_optimizer=True,
        verbose=1,
    ):
        warnings.warn(
            "`xstable.callbacks.NaNSentinel` is deprecated: pass "
            "`callbacks=[xstable.callbacks.StabilityMonitor(policy='raise', "
            "report_dir=..., data=(x, y), batch_size=...)]` to `fit` (it restores the last "
            "finite state, writes the same report and raises `xstable.NonFiniteError`), or "
            "keep its default `policy='replace'` to recover and go on.",
            DeprecationWarning,
            stacklevel=2,
        )
        self.on_nonfinite = _validation.check_one_of("on_nonfinite", on_nonfinite, _ON_NONFINITE)
        self.keep_last_good = _validation.check_one_of(
            "keep_last_good", keep_last_good, _KEEP_LAST_GOOD
        )
        include_optimizer = _validation.check_bool("include_optimizer", include_optimizer)
        if verbose not in (0, 1) or isinstance(verbose, bool):
            raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}.")
        super().__init__(
            policy="raise",
            snapshot_every=snapshot_every,
            spike_factor=None,
            log_counters=False,
            report_dir=report_dir,
            data=data,
            batch_size=batch_size,
            verbose=verbose,
        )
        self.include_optimizer = include_optimizer
        self._include_optimizer = include_optimizer
        self._stop_instead_of_raise = on_nonfinite == "stop"
        self._watch_metrics = True

    @property
    def triggered(self):
        """Whether a failure was found (and training stopped or raised)."""
        return bool(self.events)

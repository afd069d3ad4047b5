"""`StabilityMonitor`: the one host-side callback for xstable's guards, and recovery."""

import collections
import math
import os
import warnings

import keras
import numpy as np
from keras import ops

from xstable import _validation
from xstable.backend import CompiledFunction
from xstable.callbacks import _report
from xstable.errors import NonFiniteError, check_policy
from xstable.optimizers.guarded_optimizer import find_guarded_optimizer

__all__ = ["StabilityMonitor"]

_WHAT_TO_CHECK = """\
What to check:
1. The learning rate: a rate that is too high makes the loss grow, then the weights overflow. \
Start 3-10x lower, or add warm-up.
2. The data: a NaN or inf in a batch (inputs, labels or sample weights) poisons the \
gradients. Check a few batches with `numpy.isfinite`, or put \
`xstable.layers.FiniteCheck(policy="replace")` after the input.
3. The loss: log(0), division by zero, sqrt at 0 or exp overflow. Use `from_logits=True` or \
xstable's safe losses, and `xstable.optimizers.GuardedOptimizer` to skip non-finite steps.
4. Mixed precision: float16 overflows above 65504; keep the loss and the last layer in float32.
To find the first layer that goes non-finite on a batch, run \
`xstable.diagnosis.locate_nonfinite(model, x_batch, y_batch)`."""


class _State:
    """A host copy of the model's and the optimizer's variables, taken after a good step."""

    def __init__(self, model_values, optimizer_values, epoch, step):
        self.model_values = model_values
        self.optimizer_values = optimizer_values
        self.epoch = epoch
        self.step = step


class _Failure:
    """What went wrong: `kind` (loss, metric, weight, spike, guard), the value's name and
    value, and a sentence for messages."""

    def __init__(self, kind, name, value, what):
        self.kind = kind
        self.name = name
        self.value = value
        self.what = what


def _host_copy(variable):
    # np.array copies: torch's and JAX's CPU tensors would otherwise share the buffer that
    # the next step overwrites (torch) or donates (JAX).
    return np.array(ops.convert_to_numpy(variable.value), copy=True)


def _host_value_is_finite(variable):
    value = ops.convert_to_numpy(variable.value)
    return not np.issubdtype(value.dtype, np.floating) or bool(np.isfinite(value).all())


def _same_layout(kept_values, variables):
    return len(kept_values) == len(variables) and all(
        kept.shape == tuple(variable.shape)
        and kept.dtype == np.dtype(keras.backend.standardize_dtype(variable.dtype))
        for kept, variable in zip(kept_values, variables, strict=True)
    )


def _all_finite(values):
    """One scalar for all `values`: a probe sum, exact only when the sum is not finite."""
    floating = [v for v in values if "float" in keras.backend.standardize_dtype(v.dtype)]
    if not floating:
        return ops.ones((), "bool")
    total = ops.sum(ops.stack([ops.sum(ops.cast(v, "float32") * 0.0) for v in floating]))
    return ops.isfinite(total)


# A GuardedOptimizer logs the gradient norm of the step it skipped: NaN there means the guard
# did its job, not that training went non-finite.
_GUARD_DIAGNOSTICS = ("grad_norm",)

_WEIGHTS_NONFINITE = "the weights hold NaN or inf after this step (the loss was finite)"


class StabilityMonitor(keras.callbacks.Callback):
    """Watches training for NaN, inf and loss spikes; raises, warns, counts or recovers.

    The one host-side callback for xstable's guards. After every training batch it looks at
    the loss (which Keras has already brought to the host, so this costs no extra
    synchronisation); every `snapshot_every` good steps it copies the state to the host and
    checks that copy for NaN and inf (on the host, no extra device read); at each epoch end
    it checks the weights on the device (one scalar read). It also serves the guards that
    cannot act inside a compiled step: a `GuardedOptimizer`'s `on_max_skips` of `"raise"`
    or `"warn"` and the `"raise"`/`"warn"` policies of `FiniteCheck` layers (their own
    policies decide what happens to what they find).

    A step that a `GuardedOptimizer` (or the loss scaler of mixed precision) skipped is not
    a failure: it is counted in `skipped_steps` and the weights are untouched. A failure is a
    non-finite loss the guard did not skip, non-finite weights, a loss above `spike_factor`
    times the median of the last `spike_window` losses, or a guard that gave up.

    Non-finite weights under a loss that stays finite (a masked loss, such as
    `xstable.losses.SafeLoss`, leaves a NaN input row out of its value while the gradient
    through that row writes NaN into the weights) are caught at the step that wrote them
    when a snapshot is due, and otherwise at the next step: NaN weights make every
    prediction NaN, so a plain loss is NaN, and so is a safe loss, which is NaN when every
    sample of a batch was left out. The state put back is always one that was checked
    finite. `check_weights_every=1` adds a device check of the weights after every batch
    (a user-written masked loss that returns 0 for a batch of NaN predictions needs it); its
    cost is in `docs/performance.md`.

    `policy` says what happens at a failure:

    - `"replace"` (default): the last good weights and optimizer state are put back (bit for
      bit, from one host copy refreshed every `snapshot_every` good steps), the learning
      rate is multiplied by `lr_factor`, and training goes on. After `max_retries`
      recoveries with no good snapshot in between, the state is restored once more and
      `xstable.NonFiniteError` says what to check. This is the fix for "the learning rate
      was too high" failures.
    - `"raise"`: the last good state is put back and `xstable.NonFiniteError` is raised out
      of `fit`.
    - `"warn"`: a `RuntimeWarning`, and training goes on unchanged.
    - `"count"`: failures are only counted (`nonfinite_events` in the epoch logs).

    At every failure the monitor writes a report (`monitor.report`, a JSON-ready dict, and
    `monitor.report_text`): what went wrong, where, what was restored, and with `data` the
    rows of the offending batch, the non-finite rows anywhere in `data`, and a replay of
    that batch from the restored state with `xstable.diagnosis.locate_nonfinite` (naming
    the stage, layer and rows that first go non-finite). With `report_dir` the report is
    also written to `nonfinite_report.json` and `nonfinite_report.txt`, each atomically.
    Batch `b` is rows `b * batch_size` to `(b + 1) * batch_size - 1` of `data` only with
    `fit(..., shuffle=False)`: the report says so.

    With a `GuardedOptimizer` its counters (`skipped_steps`, `consecutive_skips`,
    `grad_norm`, `lr_scale`) are written into the epoch logs (and History) when
    `log_counters=True`.

    Place the monitor before callbacks that save at batch end (`BackupAndRestore` or
    `ModelCheckpoint` with an integer `save_freq`): Keras calls callbacks in list order.

    On JAX the model state lives in the trainer during `fit`; the monitor reads it through
    `Callback.model`, which syncs it back into the variables (as Keras's own callbacks do).

    Args:
        policy: String, one of `"replace"`, `"raise"`, `"warn"`, `"count"`.
        lr_factor: Float in (0, 1). Multiplies the learning rate at each recovery.
        max_retries: Int >= 1. Recoveries allowed in a row (no new good snapshot between
            them) before `NonFiniteError`.
        snapshot_every: Int >= 1. Good steps between two host copies of the state. Only
            `"replace"` and `"raise"` keep a copy.
        spike_factor: Float > 1 or `None` (spikes are not watched). A finite batch loss
            above `spike_factor` times the running median is a failure (default 10).
        spike_window: Int >= 3. How many recent losses the running median covers; spikes
            are watched once that many losses were seen.
        check_weights_every: Int >= 1, `None` or `"auto"`. Batches between two device
            checks of the weights; `None` never checks them. `"auto"` (default): checks the
            weights at every snapshot (on the host copy) and at each epoch end.
        log_counters: Bool. Write a GuardedOptimizer's counters into the epoch logs.
        report_dir: String, `os.PathLike` or `None`. Directory for the written reports;
            created when needed. `None` (default) writes no files.
        data: `None` or a tuple `(x, y)` or `(x, y, sample_weight)` of arrays (or nested
            structures of arrays, as `fit` takes them): the training data, used to name and
            replay the offending batch.
        batch_size: Int >= 1 or `None`. The `batch_size` given to `fit` (Keras's default is
            32); used with `data`.
        verbose: Int. 1 prints one line per recovery; 0 is silent.

    Raises:
        TypeError, ValueError: For an argument of the wrong type or out of range.
        xstable.NonFiniteError: From `fit`, under `"raise"`, or under `"replace"` after
            `max_retries` recoveries in a row.

    Example:

    ```python
    model.compile(keras.optimizers.SGD(0.5), "mse")   # a rate too high for this data
    monitor = xstable.callbacks.StabilityMonitor(lr_factor=0.5)
    model.fit(x, y, epochs=5, callbacks=[monitor])
    monitor.recoveries, float(model.optimizer.learning_rate)
    ```
    """

    def __init__(
        self,
        policy="replace",
        lr_factor=0.5,
        max_retries=5,
        snapshot_every=100,
        spike_factor=10.0,
        spike_window=20,
        check_weights_every="auto",
        log_counters=True,
        report_dir=None,
        data=None,
        batch_size=32,
        verbose=1,
    ):
        super().__init__()
        self.policy = check_policy(policy)
        self.lr_factor = _validation.check_number(
            "lr_factor", lr_factor, 0.0, 1.0, low_inclusive=False, high_inclusive=False
        )
        self.max_retries = _validation.check_int("max_retries", max_retries, 1)
        self.snapshot_every = _validation.check_int("snapshot_every", snapshot_every, 1)
        self.spike_factor = _validation.check_number(
            "spike_factor", spike_factor, 1.0, low_inclusive=False, allow_none=True
        )
        self.spike_window = _validation.check_int("spike_window", spike_window, 3)
        if check_weights_every != "auto":
            check_weights_every = _validation.check_int(
                "check_weights_every", check_weights_every, 1, allow_none=True
            )
        self.check_weights_every = check_weights_every
        self.log_counters = _validation.check_bool("log_counters", log_counters)
        if report_dir is not None and not isinstance(report_dir, (str, os.PathLike)):
            raise TypeError(
                "`report_dir` must be a str, an os.PathLike or None. "
                f"Received: report_dir={report_dir!r} of type {type(report_dir).__name__}."
            )
        self.report_dir = None if report_dir is None else os.fspath(report_dir)
        if data is not None and (not isinstance(data, (tuple, list)) or len(data) not in (2, 3)):
            raise ValueError(
                "`data` must be a tuple `(x, y)` or `(x, y, sample_weight)` holding the "
                f"training data passed to `fit`. Received: data of type {type(data).__name__}"
                + (f" with {len(data)} elements." if isinstance(data, (tuple, list)) else ".")
            )
        self.data = None if data is None else tuple(data)
        self.batch_size = _validation.check_int("batch_size", batch_size, 1, allow_none=True)
        self.verbose = _validation.check_int("verbose", verbose)
        # Set by the deprecated NaNSentinel, which keeps its documented behaviour through
        # them: stop instead of raising, also watch the metrics, leave the optimizer alone.
        self._stop_instead_of_raise = False
        self._watch_metrics = False
        self._include_optimizer = True
        # The FiniteCheck layers' raise/warn policies, served from the host.
        from xstable.layers.finite_check import FiniteCheckMonitor

        self._finite_checks = FiniteCheckMonitor(_internal=True)
        self._weights_check = None
        self._checked_variables = None
        self._reset()

    def _reset(self):
        self.recoveries = 0
        self.skipped_steps = 0
        self.events = []
        self.report = None
        self.report_text = None
        self.report_paths = None
        self._stopped = False
        self._retries_in_a_row = 0
        self._state = None
        self._good_since_snapshot = 0
        self._step = 0
        self._epoch = 0
        self._losses = collections.deque(maxlen=self.spike_window)
        self._loss = None
        self._batches_in_mean = 0
        self._last_mean = 0.0
        self._first_batch = 0
        self._expected_iterations = 0
        self._guard = None
        self._weights_every = None

    @property
    def last_good_state(self):
        """A copy of the state restored at a failure: `(model_values, optimizer_values)`
        (lists of NumPy arrays), or None. The monitor refreshes its own copy in place."""
        if self._state is None:
            return None
        return (
            [value.copy() for value in self._state.model_values],
            [value.copy() for value in self._state.optimizer_values],
        )

    def set_model(self, model):
        super().set_model(model)
        self._finite_checks.set_model(model)

    # ------------------------------------------------------------------ begin, end

    def on_train_begin(self, logs=None):
        self._reset()
        model = self.model
        self._guard = find_guarded_optimizer(getattr(model, "optimizer", None))
        if self._guard is not None:
            self._guard._host_checks = True
            object.__setattr__(self._guard, "_wrapped", model.optimizer is not self._guard)
        if self.policy == "replace":
            self._check_rate_can_be_lowered(model.optimizer)
        self._weights_every = self.check_weights_every
        if self._weights_every == "auto":
            self._weights_every = None
        if self._weights_every is not None and self._checked_variables != [
            id(v) for v in model.trainable_variables
        ]:
            # Kept from one `fit` to the next on the same variables: traced once.
            self._weights_check = CompiledFunction(
                lambda values: _all_finite(values[0]),
                [model.trainable_variables],
                eager_calls=0,
            )
            self._checked_variables = [id(v) for v in model.trainable_variables]
        if self._keeps_state():
            if not model.optimizer.built:
                # TensorFlow builds it in the first step; the first copy must hold its slots.
                model.optimizer.build(model.trainable_variables)
            self._take_snapshot(model)
        self._expected_iterations = self._read_iterations()
        self._finite_checks.on_train_begin(logs)

    def on_train_end(self, logs=None):
        self._finite_checks.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._batches_in_mean = 0  # Keras resets its metrics at every epoch begin

    def on_epoch_end(self, epoch, logs=None):
        self._finite_checks.on_epoch_end(epoch, logs)
        if self._stopped:
            return
        failure = None
        if self._watch_metrics:
            failure = self._nonfinite_log(logs, ())
        if failure is None and self.check_weights_every is not None:
            if not self._weights_finite_now():
                failure = _Failure("weight", "model.weights", math.nan, _WEIGHTS_NONFINITE)
        if failure is not None:
            self._act(failure, None, logs)
        if logs is None:
            return
        if self._guard is not None and self.log_counters:
            self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
            logs.update(self._guard.stats())
        if self.policy == "count":
            logs["nonfinite_events"] = float(len(self.events))

    def on_train_batch_begin(self, batch, logs=None):
        self._serve_finite_checks(self._finite_checks.on_train_batch_begin, batch, logs)
        self._first_batch = batch

    def on_train_batch_end(self, batch, logs=None):
        self._serve_finite_checks(self._finite_checks.on_train_batch_end, batch, logs)
        if self._stopped:
            return
        steps = max(1, batch - self._first_batch + 1)  # several with steps_per_execution
        self._step += steps
        self._expected_iterations += steps
        failure = self._find_failure(logs or {})
        if failure is None:
            failure = self._good_step()
        if failure is not None:
            self._act(failure, batch, logs)

    def _serve_finite_checks(self, hook, batch, logs):
        """Runs a FiniteCheck reader hook; a check that raises leaves the last good state."""
        try:
            hook(batch, logs)
        except NonFiniteError:
            if self._keeps_state():
                self._restore(self.model)
            raise

    def on_test_begin(self, logs=None):
        self._finite_checks.on_test_begin(logs)

    def on_test_end(self, logs=None):
        self._finite_checks.on_test_end(logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._finite_checks.on_test_batch_begin(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._finite_checks.on_test_batch_end(batch, logs)

    def on_predict_begin(self, logs=None):
        self._finite_checks.on_predict_begin(logs)

    def on_predict_end(self, logs=None):
        self._finite_checks.on_predict_end(logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._finite_checks.on_predict_batch_begin(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._finite_checks.on_predict_batch_end(batch, logs)

    # ------------------------------------------------------------------- detection

    def _batch_loss(self, logs):
        """This batch's loss, from the running mean that Keras logs (None without a loss).

        Keras logs the mean of the losses since the loss tracker was last reset (at epoch
        begin, or by this monitor after a skipped or undone step). With equal batch sizes
        the batch's own loss is `(n + 1) * mean_n - n * mean_(n-1)`.
        """
        mean = logs.get("loss")
        if mean is None:
            return None
        mean = float(mean)
        n = self._batches_in_mean
        self._batches_in_mean += 1
        loss = mean if n == 0 else (n + 1) * mean - n * self._last_mean
        self._last_mean = mean
        return loss

    def _restart_running_means(self):
        """Resets Keras's metric trackers after a step whose values are not the model's any
        more.

        A NaN loss would otherwise stay in the epoch's running mean, and in every later
        batch's logs. The epoch's logged loss is then the mean over the batches after it.
        """
        for metric in self.model.metrics:
            if metric.name in ("loss", "compile_metrics"):
                metric.reset_state()
        self._batches_in_mean = 0

    def _nonfinite_log(self, logs, skip):
        """The first non-finite metric in `logs` (none of `skip`, nor a guard's
        diagnostics), as a failure, or None."""
        ignored = set(skip) | (set(_GUARD_DIAGNOSTICS) if self._guard is not None else set())
        for name in sorted(logs or {}):
            if name in ignored:
                continue
            value = _report.log_value(logs[name])
            if value is not None and not math.isfinite(value):
                return _Failure("metric", name, value, f"the metric `{name}` is {value}")
        return None

    def _find_failure(self, logs):
        """What went wrong in the step just run, as a `_Failure`, or None."""
        loss = self._batch_loss(logs)
        guard = self._guard
        if loss is not None and not math.isfinite(loss):
            if self._step_was_skipped():
                self.skipped_steps += 1
                self._restart_running_means()
                self._loss = None
                return None if guard is None else self._guard_failure()
            return _Failure("loss", "loss", loss, self._describe_nonfinite_loss(loss))
        if guard is not None and guard.max_consecutive_skips is not None:
            failure = self._guard_failure()
            if failure is not None:
                return failure
        if self._watch_metrics:
            failure = self._nonfinite_log(logs, ("loss",))
            if failure is not None:
                if self._step_was_skipped():
                    self.skipped_steps += 1
                    self._restart_running_means()
                    return None
                return failure
        if (
            self._weights_every is not None
            and self._step % self._weights_every == 0
            and not self._weights_finite()
        ):
            return _Failure("weight", "model.weights", math.nan, _WEIGHTS_NONFINITE)
        self._loss = loss
        if loss is not None:
            if self.spike_factor is not None and len(self._losses) == self._losses.maxlen:
                median = float(np.median(self._losses))
                if loss > self.spike_factor * median and loss > 0:
                    return _Failure(
                        "spike",
                        "loss",
                        loss,
                        f"the loss {loss:.6g} is above spike_factor={self.spike_factor} times "
                        f"its running median {median:.6g}",
                    )
            self._losses.append(loss)
        return None

    def _describe_nonfinite_loss(self, loss):
        """Why the loss may be non-finite; reads the weights once (a failure is rare)."""
        what = f"the loss is {loss}"
        if not self._weights_finite_now():
            what += (
                " and the weights hold NaN or inf (written by this step, or by the step "
                "before under a loss that left a non-finite sample out of its value)"
            )
        loss_object = getattr(self.model, "loss", None)
        if (
            getattr(loss_object, "invalid_targets", None) == "mask"
            or type(loss_object).__name__ == "SafeLoss"
        ):
            what += (
                f" ({type(loss_object).__name__} is NaN for a batch whose samples were all "
                "left out: every target invalid, or every sample's loss non-finite; a "
                "`GuardedOptimizer` skips such a step)"
            )
        return what

    def _weights_finite(self):
        self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
        return bool(ops.convert_to_numpy(self._weights_check()))

    def _weights_finite_now(self):
        """One device check of the weights outside the per-batch schedule (rare paths)."""
        if self._weights_check is not None:
            return self._weights_finite()
        model = self.model  # on JAX, puts the trainer's state into the variables
        return bool(ops.convert_to_numpy(_all_finite(model.trainable_variables)))

    def _read_iterations(self):
        self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _step_was_skipped(self):
        """Whether the optimizer left this step out (a GuardedOptimizer, or the loss scaler
        of mixed precision): its `iterations` count applied steps only.

        Read only after a non-finite value: one scalar, rare.
        """
        iterations = self._read_iterations()
        skipped = iterations < self._expected_iterations
        self._expected_iterations = iterations
        if self._guard is not None:
            skipped = skipped or int(ops.convert_to_numpy(self._guard.consecutive_skips.value)) > 0
        return skipped

    def _guard_failure(self):
        self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
        if self._guard.on_max_skips != "raise":
            self._guard.check()  # "warn" warns once per run of skips; the others go on
            return None
        if self._guard.gave_up():
            stats = self._guard.stats()
            return _Failure(
                "guard",
                self._guard.name,
                float(stats["consecutive_skips"]),
                f"GuardedOptimizer '{self._guard.name}' skipped "
                f"{stats['consecutive_skips']} non-finite steps in a row, more than "
                f"max_consecutive_skips={self._guard.max_consecutive_skips}",
            )
        return None

    # ---------------------------------------------------------------------- acting

    def _keeps_state(self):
        return self.policy in ("replace", "raise")

    def _good_step(self):
        """Refreshes the kept state when due; returns a failure if the new copy holds NaN."""
        if not self._keeps_state():
            return None
        self._good_since_snapshot += 1
        if self._good_since_snapshot >= self.snapshot_every and self._loss_is_healthy():
            if not self._take_snapshot(self.model):
                return _Failure("weight", "model.weights", math.nan, _WEIGHTS_NONFINITE)
            self._retries_in_a_row = 0
        return None

    def _loss_is_healthy(self):
        """Whether the state after this step may replace the kept one.

        Under `"replace"`, the loss of a step is that of the weights before it. A loss at or
        below the median of the recent ones says training is not drifting away: a loss that
        grows step after step (a learning rate too high, before anything overflows) never
        is, so the kept state stays one from before the drift. `"raise"` keeps the newest
        finite state.
        """
        if self.policy != "replace":
            return True
        if self._loss is None or len(self._losses) < 3:
            return self._loss is None or len(self._losses) == 0 or math.isfinite(self._loss)
        return self._loss <= float(np.median(self._losses))

    def _act(self, failure, batch, logs):
        where = f"epoch {self._epoch}" + (", end of epoch" if batch is None else f", batch {batch}")
        failing_step = None if batch is None else self._step - (batch - self._first_batch + 1)
        event = {
            "epoch": self._epoch,
            "batch": batch,
            "step": self._step,
            "what": failure.what,
        }
        self.events.append(event)
        action = {
            "count": "counted",
            "warn": "warned",
            "replace": "recovered",
            "raise": "stopped" if self._stop_instead_of_raise else "raised",
        }[self.policy]
        report = _report.new_report(
            {
                "kind": failure.kind,
                "name": failure.name,
                "value": failure.value,
                "epoch": self._epoch,
                "batch": batch,
                "global_step": failing_step,
            },
            failure.what,
            logs,
            action,
        )
        if self.policy == "count":
            self._finish_report(report, batch, failing_step)
            return
        if self.policy == "warn":
            self._finish_report(report, batch, failing_step)
            warnings.warn(
                f"StabilityMonitor: at {where}, {failure.what}.\n{_WHAT_TO_CHECK}",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        model = self.model
        restored = self._restore(model)
        report["restored"] = self._describe_restore(failing_step)
        self._expected_iterations = self._read_iterations()
        if self.policy == "raise":
            # Training ends here: the epoch's logs keep the non-finite value they showed.
            self._finish_report(report, batch, failing_step)
            message = f"StabilityMonitor: at {where}, {failure.what}. {restored}"
            if self._stop_instead_of_raise:
                self._stopped = True
                model.stop_training = True
                if self.verbose:
                    print(f"{message} Training stopped.")
                return
            raise NonFiniteError(f"{message}\n\n{_WHAT_TO_CHECK}")
        if self._retries_in_a_row >= self.max_retries:
            self._finish_report(report, batch, failing_step)
            raise NonFiniteError(
                f"StabilityMonitor: at {where}, {failure.what}, after {self.max_retries} "
                f"recoveries in a row (each restored the last good state and multiplied the "
                f"learning rate by lr_factor={self.lr_factor}). {restored}\n\n{_WHAT_TO_CHECK}"
            )
        self._restart_running_means()
        self._retries_in_a_row += 1
        self.recoveries += 1
        self._good_since_snapshot = 0
        rate = self._lower_learning_rate(model.optimizer)
        event["learning_rate"] = rate
        self._losses.clear()
        self._finish_report(report, batch, failing_step)
        if self.verbose:
            print(
                f"StabilityMonitor: at {where}, {failure.what}; {restored} Learning rate "
                f"lowered to {rate:.6g} (recovery {self._retries_in_a_row} of at most "
                f"{self.max_retries} in a row)."
            )

    def _finish_report(self, report, batch, failing_step):
        """Names the offending batch, replays it with `data`, and writes the report."""
        if batch is not None:  # found at epoch end, the batch is not known
            report["offending_batch"] = _report.offending_rows(
                self._epoch, self._first_batch, batch, self.data, self.batch_size
            )
        if self.data is not None:
            report["data_nonfinite_rows"] = _report.nonfinite_rows(self.data)
        report["locate_nonfinite"] = _report.locate_in_data(
            self.model, self.data, report["offending_batch"]
        )
        self.report = _report.jsonable(report)
        self.report_text = _report.format_report_text(self.report)
        if self.report_dir is not None:
            self.report_paths = _report.write_report(self.report_dir, self.report, self.report_text)

    def _describe_restore(self, failing_step):
        state = self._state
        if state is None:
            return {"done": False, "why": "no finite state was kept"}
        steps_back = None if failing_step is None else failing_step - state.step
        return {
            "done": True,
            "snapshot_before_global_step": state.step,
            "steps_undone": None if steps_back is None else steps_back + 1,
            "exact_state_before_failing_step": steps_back == 0,
            "model_variables": len(state.model_values),
            "optimizer_variables": len(state.optimizer_values),
            "kept_on": "host",
        }

    # ------------------------------------------------------------- state and rate

    def _model_variables(self, model):
        # FiniteCheck counters are evidence, not state to undo: a roll-back keeps them, so
        # their policies still see what the undone steps found.
        from xstable.layers.finite_check import _finite_checks

        counters = {id(layer.nonfinite_count) for layer in _finite_checks(model)}
        return [
            v
            for v in list(model.trainable_variables) + list(model.non_trainable_variables)
            if id(v) not in counters
        ]

    def _optimizer_variables(self, model):
        return list(model.optimizer.variables) if self._include_optimizer else []

    def _take_snapshot(self, model):
        """Keeps a host copy of the state if it is finite; returns whether it was.

        The state is checked first, one variable at a time, so that a non-finite state never
        replaces the kept one; a kept copy of the same layout is then refreshed in place, so
        that the host holds one copy of the state, not two.
        """
        model_variables = self._model_variables(model)
        optimizer_variables = self._optimizer_variables(model)
        # A guard's last gradient norm is NaN after a skipped step: a diagnostic, not state.
        diagnostics = set() if self._guard is None else {id(self._guard.grad_norm)}
        unchecked = {i for i, v in enumerate(optimizer_variables) if id(v) in diagnostics}
        self._good_since_snapshot = 0
        checked = model_variables + [
            v for i, v in enumerate(optimizer_variables) if i not in unchecked
        ]
        if not all(_host_value_is_finite(v) for v in checked):
            return False
        state = self._state
        if (
            state is not None
            and _same_layout(state.model_values, model_variables)
            and (_same_layout(state.optimizer_values, optimizer_variables))
        ):
            for kept, variable in zip(
                state.model_values + state.optimizer_values,
                model_variables + optimizer_variables,
                strict=True,
            ):
                np.copyto(kept, ops.convert_to_numpy(variable.value))
            state.epoch, state.step = self._epoch, self._step
            return True
        self._state = _State(
            [_host_copy(v) for v in model_variables],
            [_host_copy(v) for v in optimizer_variables],
            self._epoch,
            self._step,
        )
        return True

    def _restore(self, model):
        state = self._state
        if state is None:
            return "No finite state was kept to restore."
        for variable, value in zip(self._model_variables(model), state.model_values, strict=True):
            variable.assign(value)
        optimizer_variables = self._optimizer_variables(model)
        if len(optimizer_variables) != len(state.optimizer_values):
            return (
                f"Restored the weights of global step {state.step} "
                f"({self._step - state.step} steps back); the optimizer was built after that "
                "copy, so its state was left as it is."
            )
        for variable, value in zip(optimizer_variables, state.optimizer_values, strict=True):
            variable.assign(value)
        return (
            f"Restored the weights and optimizer state of global step {state.step} "
            f"({self._step - state.step} steps back)."
        )

    def _check_rate_can_be_lowered(self, optimizer):
        rate = getattr(optimizer, "learning_rate", None)
        if isinstance(rate, keras.Variable):
            return
        raise ValueError(
            "StabilityMonitor(policy='replace') lowers the optimizer's learning rate, which "
            "must then be a number (a variable), not a `LearningRateSchedule` or a callable. "
            f"Received: optimizer.learning_rate={rate!r}. Pass a float rate, or "
            "policy='raise'."
        )

    def _lower_learning_rate(self, optimizer):
        # The restored optimizer state holds the rate of the snapshot: every recovery since
        # that snapshot lowers it once more.
        restored = float(ops.convert_to_numpy(optimizer.learning_rate))
        rate = restored * self.lr_factor**self._retries_in_a_row
        optimizer.learning_rate = rate
        return rate

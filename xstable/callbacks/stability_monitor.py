"""`StabilityMonitor`: the one host-side callback for xstable's guards, and recovery."""

import collections
import math
import warnings

import keras
import numpy as np
from keras import ops

from xstable.backend import CompiledFunction
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

    def __init__(self, model_values, optimizer_values, epoch, batch, step):
        self.model_values = model_values
        self.optimizer_values = optimizer_values
        self.epoch = epoch
        self.batch = batch
        self.step = step


def _host_copy(variable):
    # np.array copies: torch's and JAX's CPU tensors would otherwise share the buffer that
    # the next step overwrites (torch) or donates (JAX).
    return np.array(ops.convert_to_numpy(variable.value), copy=True)


def _all_finite(values):
    """One scalar for all `values`: a probe sum, exact only when the sum is not finite."""
    floating = [v for v in values if "float" in keras.backend.standardize_dtype(v.dtype)]
    if not floating:
        return ops.ones((), "bool")
    total = ops.sum(ops.stack([ops.sum(ops.cast(v, "float32") * 0.0) for v in floating]))
    return ops.isfinite(total)


def _check_number(name, value, low, high, inclusive_low=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}.")
    value = float(value)
    above = value >= low if inclusive_low else value > low
    if not (math.isfinite(value) and above and value < high):
        interval = f"{'[' if inclusive_low else '('}{low}, {high})"
        raise ValueError(f"`{name}` must be in {interval}. Received: {name}={value!r}.")
    return value


def _check_int(name, value, low, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be an int{' or None' if allow_none else ''}. "
            f"Received: {name}={value!r} of type {type(value).__name__}."
        )
    if value < low:
        raise ValueError(f"`{name}` must be >= {low}. Received: {name}={value!r}.")
    return int(value)


class StabilityMonitor(keras.callbacks.Callback):
    """Watches training for NaN, inf and loss spikes; raises, warns, counts or recovers.

    The one host-side callback for xstable's guards. After every training batch it looks at
    the loss (which Keras has already brought to the host), and (without a
    `GuardedOptimizer`, see `check_weights_every`) at the model's weights with one all-finite
    reduction on the device read as one scalar. It also serves the guards
    that cannot act inside a compiled step: a `GuardedOptimizer`'s `on_max_skips="raise"`
    and the `"raise"`/`"warn"` policies of `FiniteCheck` layers (their own policies decide
    what happens to what they find).

    A step that a `GuardedOptimizer` skipped is not a failure: its NaN loss is counted in
    `skipped_steps` and the weights are untouched. A failure is a non-finite loss the guard
    did not skip, non-finite weights (caught at the step that wrote them, also when a masked
    loss stays finite), a loss above `spike_factor` times the median of the last
    `spike_window` losses, or a guard that gave up. `policy` says what happens then:

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

    With a `GuardedOptimizer` its counters (`skipped_steps`, `consecutive_skips`,
    `grad_norm`, `lr_scale`) are written into the epoch logs (and History) when
    `log_counters=True`.

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
        check_weights_every: Int >= 1, `None` or `"auto"`. Batches between two all-finite
            checks of the weights; `None` never checks them. `"auto"` (default): every batch,
            unless the optimizer is a `GuardedOptimizer`, which skips every step whose
            gradients are not finite, so that a NaN cannot reach the weights through a step.
        log_counters: Bool. Write a GuardedOptimizer's counters into the epoch logs.
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
        verbose=1,
    ):
        super().__init__()
        self.policy = check_policy(policy)
        self.lr_factor = _check_number("lr_factor", lr_factor, 0.0, 1.0)
        self.max_retries = _check_int("max_retries", max_retries, 1)
        self.snapshot_every = _check_int("snapshot_every", snapshot_every, 1)
        if spike_factor is not None:
            spike_factor = _check_number("spike_factor", spike_factor, 1.0, math.inf)
        self.spike_factor = spike_factor
        self.spike_window = _check_int("spike_window", spike_window, 3)
        if check_weights_every != "auto":
            check_weights_every = _check_int(
                "check_weights_every", check_weights_every, 1, allow_none=True
            )
        self.check_weights_every = check_weights_every
        if not isinstance(log_counters, bool):
            raise TypeError(
                f"`log_counters` must be a bool. Received: log_counters={log_counters!r}."
            )
        self.log_counters = log_counters
        if isinstance(verbose, bool) or not isinstance(verbose, int):
            raise TypeError(f"`verbose` must be an int. Received: verbose={verbose!r}.")
        self.verbose = verbose
        # The FiniteCheck layers' raise/warn policies, served from the host.
        from xstable.layers.finite_check import FiniteCheckMonitor

        self._finite_checks = FiniteCheckMonitor(_internal=True)
        self._weights_check = None
        self._checked_variables = None
        self._reset()

    def _reset(self):
        self.recoveries = 0
        self.events = []
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
        """The host copy restored at a failure: `(model_values, optimizer_values)` or None."""
        if self._state is None:
            return None
        return self._state.model_values, self._state.optimizer_values

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
            self._weights_every = None if self._guard is not None else 1
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
        steps = max(1, batch - self._first_batch + 1)  # several with steps_per_execution
        self._step += steps
        self._expected_iterations += steps
        failure = self._find_failure(batch, logs or {})
        if failure is None:
            self._good_step()
            return
        self._act(failure, batch)

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

    def _restart_loss_mean(self):
        """Resets Keras's loss tracker after a step whose loss is not the model's any more.

        A NaN loss would otherwise stay in the epoch's running mean, and in every later
        batch's logs. The epoch's logged loss is then the mean over the batches after it.
        """
        for metric in self.model.metrics:
            if metric.name == "loss":
                metric.reset_state()
        self._batches_in_mean = 0

    def _find_failure(self, batch, logs):
        """What went wrong in the step just run, as a short description, or None."""
        loss = self._batch_loss(logs)
        guard = self._guard
        if loss is not None and not math.isfinite(loss):
            if self._step_was_skipped():
                self._restart_loss_mean()
                self._loss = None
                return None if guard is None else self._guard_failure()
            return f"the loss is {loss}"
        if guard is not None and guard.max_consecutive_skips is not None:
            failure = self._guard_failure()
            if failure is not None:
                return failure
        if (
            self._weights_every is not None
            and self._step % self._weights_every == 0
            and not self._weights_finite()
        ):
            return "the weights hold NaN or inf after this step (the loss was finite)"
        self._loss = loss
        if loss is not None:
            if self.spike_factor is not None and len(self._losses) == self._losses.maxlen:
                median = float(np.median(self._losses))
                if loss > self.spike_factor * median and loss > 0:
                    return (
                        f"the loss {loss:.6g} is above spike_factor={self.spike_factor} times "
                        f"its running median {median:.6g}"
                    )
            self._losses.append(loss)
        return None

    def _weights_finite(self):
        self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
        return bool(ops.convert_to_numpy(self._weights_check()))

    def _read_iterations(self):
        self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _step_was_skipped(self):
        """Whether the optimizer left this step out (a GuardedOptimizer, or the loss scaler
        of mixed precision): its `iterations` count applied steps only.

        Read only after a non-finite loss: one scalar, rare.
        """
        iterations = self._read_iterations()
        skipped = iterations < self._expected_iterations
        self._expected_iterations = iterations
        if self._guard is not None:
            skipped = skipped or int(ops.convert_to_numpy(self._guard.consecutive_skips.value)) > 0
        return skipped

    def _guard_failure(self):
        self.model  # noqa: B018  (on JAX, puts the trainer's state into the variables)
        if self._guard.gave_up():
            stats = self._guard.stats()
            return (
                f"GuardedOptimizer '{self._guard.name}' skipped "
                f"{stats['consecutive_skips']} non-finite steps in a row, more than "
                f"max_consecutive_skips={self._guard.max_consecutive_skips}"
            )
        return None

    # ---------------------------------------------------------------------- acting

    def _keeps_state(self):
        return self.policy in ("replace", "raise")

    def _good_step(self):
        if not self._keeps_state():
            return
        self._good_since_snapshot += 1
        if self._good_since_snapshot >= self.snapshot_every and self._loss_is_healthy():
            self._take_snapshot(self.model)
            self._retries_in_a_row = 0

    def _loss_is_healthy(self):
        """Whether the state after this step may replace the kept one.

        The loss of a step is that of the weights before it. A loss at or below the median
        of the recent ones says training is not drifting away: a loss that grows step after
        step (a learning rate too high, before anything overflows) never is, so the kept
        state stays one from before the drift.
        """
        if self._loss is None or len(self._losses) < 3:
            return self._loss is None or len(self._losses) == 0 or math.isfinite(self._loss)
        return self._loss <= float(np.median(self._losses))

    def _act(self, failure, batch):
        event = {"epoch": self._epoch, "batch": batch, "step": self._step, "what": failure}
        self.events.append(event)
        where = f"epoch {self._epoch}, batch {batch}"
        if self.policy == "count":
            return
        if self.policy == "warn":
            warnings.warn(
                f"StabilityMonitor: at {where}, {failure}.\n{_WHAT_TO_CHECK}",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        model = self.model
        restored = self._restore(model)
        self._restart_loss_mean()
        self._expected_iterations = self._read_iterations()
        if self.policy == "raise":
            raise NonFiniteError(
                f"StabilityMonitor: at {where}, {failure}. {restored}\n\n{_WHAT_TO_CHECK}"
            )
        if self._retries_in_a_row >= self.max_retries:
            raise NonFiniteError(
                f"StabilityMonitor: at {where}, {failure}, after {self.max_retries} "
                f"recoveries in a row (each restored the last good state and multiplied the "
                f"learning rate by lr_factor={self.lr_factor}). {restored}\n\n{_WHAT_TO_CHECK}"
            )
        self._retries_in_a_row += 1
        self.recoveries += 1
        self._good_since_snapshot = 0
        rate = self._lower_learning_rate(model.optimizer)
        event["learning_rate"] = rate
        self._losses.clear()
        if self.verbose:
            print(
                f"StabilityMonitor: at {where}, {failure}; {restored} Learning rate "
                f"lowered to {rate:.6g} (recovery {self._retries_in_a_row} of at most "
                f"{self.max_retries} in a row)."
            )

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

    def _take_snapshot(self, model):
        self._state = _State(
            [_host_copy(v) for v in self._model_variables(model)],
            [_host_copy(v) for v in model.optimizer.variables],
            self._epoch,
            None,
            self._step,
        )
        self._good_since_snapshot = 0

    def _restore(self, model):
        state = self._state
        if state is None:
            return "No good state was kept to restore."
        for variable, value in zip(self._model_variables(model), state.model_values, strict=True):
            variable.assign(value)
        optimizer_variables = model.optimizer.variables
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

"""NaNSentinel: stop at the first non-finite value, put the last good weights back, say why."""

import datetime
import json
import math
import os
from collections import deque

import keras
import numpy as np

from xstable.callbacks._atomic_write import atomic_write_text
from xstable.errors import NonFiniteError
from xstable.optimizers.guarded_optimizer import find_guarded_optimizer
from xstable.runtime import active_device, library_versions

__all__ = ["NaNSentinel"]

_ON_NONFINITE = ("stop", "raise")
_KEEP_LAST_GOOD = ("auto", "device", "host")
REPORT_JSON_NAME = "nonfinite_report.json"
REPORT_TEXT_NAME = "nonfinite_report.txt"

_LOCATE_UNAVAILABLE = (
    "Pass `data=(x, y)` (and the `batch_size` given to `fit`) to NaNSentinel so that it can "
    "replay the offending batch with `xstable.diagnosis.locate_nonfinite`."
)


class _Snapshot:
    """Copies of every model and optimizer variable, taken before global step `global_step`."""

    def __init__(self, model_values, optimizer_values, epoch, batch, global_step, where):
        self.model_values = model_values
        self.optimizer_values = optimizer_values
        self.epoch = epoch
        self.batch = batch
        self.global_step = global_step
        self.where = where

    def all_finite(self):
        # Runs only when something already went wrong, so a host transfer is acceptable here.
        for value in self.model_values + self.optimizer_values:
            array = np.asarray(keras.ops.convert_to_numpy(value))
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                return False
        return True


def _is_float_variable(variable):
    return "float" in str(variable.dtype)


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf": JSON has no literal for them.
    return value


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(key): _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(value) for value in obj]
    if isinstance(obj, (np.floating, float)):
        return _json_number(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


# A GuardedOptimizer logs the gradient norm of the step it skipped: NaN there means the guard
# did its job (weights and slots untouched), not that training went non-finite.
_GUARD_DIAGNOSTICS = ("grad_norm",)


def _has_guarded_optimizer(model):
    return find_guarded_optimizer(getattr(model, "optimizer", None)) is not None


def _log_value(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class NaNSentinel(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, metric or weight and restores good weights.

    For recovery (roll back, lower the learning rate, go on) and for the guards of compiled
    code, use `xstable.callbacks.StabilityMonitor`, xstable's one monitor callback; this
    callback stays for its written report and the replay of the offending batch. A step that
    the optimizer left out (a `GuardedOptimizer` skip, or the loss scaler of mixed precision)
    is not a failure here either.

    Keras's `TerminateOnNaN` only stops, leaving NaN weights in the model (and in any checkpoint
    saved afterwards). `NaNSentinel` watches every batch's logs (loss and metrics, which Keras
    has already copied to the host for the callbacks, so this check costs no extra
    synchronisation) and the epoch logs (including `val_*`), and checks the weights once per
    epoch on the device (one scalar read). At the first non-finite value it:

    1. restores the newest finite snapshot of the model weights and optimizer state; after a
       non-finite loss or metric at step `g` this is the state from *before* step `g` when
       `snapshot_every=1`, bit-identical, so the failing update is undone;
    2. writes a JSON report and a readable text report into `report_dir`, each atomically (a
       crash mid-write leaves the previous file or none, never half a file);
    3. when `data` was given, replays the offending batch from the restored weights with
       `xstable.diagnosis.locate_nonfinite` and puts its answer (stage, layer, tensor, rows)
       in the report;
    4. stops training (`on_nonfinite="stop"`) or raises `xstable.NonFiniteError`
       (`on_nonfinite="raise"`).

    Cost of keeping the last good state: before every `snapshot_every`-th step the sentinel
    copies all model and optimizer variables (two snapshots are kept). With
    `keep_last_good="device"` the copies stay on the accelerator: no host synchronisation,
    but device memory for weights and optimizer slots grows 2x. With `"host"` they are NumPy
    arrays: host memory, and one device-to-host transfer of all variables per snapshot,
    which on a CPU is a plain memory copy. `"auto"` (default) picks `"host"` when the backend
    computes on the CPU and `"device"` otherwise. A larger `snapshot_every` is cheaper, but
    the restored state is then up to `snapshot_every` steps older than the failure and the
    replay may not reproduce it; the report says how many steps were undone. Measured costs
    are in `docs/diagnose.md`.

    How the offending batch is found: Keras numbers batches within an epoch. With `data` and
    `batch_size` the sentinel maps batch `b` to rows `b*batch_size ... (b+1)*batch_size - 1`,
    which is the batch Keras trained on only when `fit(..., shuffle=False)` (Keras shuffles
    NumPy inputs with its own random state, which a callback cannot see). The report states
    this assumption. It also lists non-finite rows found anywhere in `data`, which does not
    depend on the order.

    Place `NaNSentinel` before any callback that saves at batch end (`BackupAndRestore` or
    `ModelCheckpoint` with an integer `save_freq`): Keras calls callbacks in list order, and a
    checkpoint taken before the sentinel has restored the weights would hold the non-finite
    ones. Epoch-end saving (the default of both) works in any order, because the sentinel
    restores the weights at the end of the failing batch, before any epoch-end callback runs.

    On JAX the sentinel reads variables through `Callback.model`, which attaches the training
    state to the model (a pointer swap, no copy to the host) before every snapshot.

    Args:
        report_dir: str, `os.PathLike` or `None`. Directory for `nonfinite_report.json` and
            `nonfinite_report.txt`; created when needed. `None` writes no files (the report
            is still in `sentinel.report`).
        on_nonfinite: str. `"stop"` sets `model.stop_training` (fit returns normally);
            `"raise"` raises `xstable.NonFiniteError` out of `fit`.
        data: `None` or a tuple `(x, y)` or `(x, y, sample_weight)` of arrays (or nested
            lists/dicts of arrays, as `fit` accepts): the training data, used to replay the
            offending batch.
        batch_size: int. The `batch_size` passed to `fit` (Keras's default is 32). Only used
            with `data`.
        snapshot_every: int >= 1. Take a snapshot before every `snapshot_every`-th step.
        keep_last_good: str. `"auto"`, `"device"` or `"host"`: where the snapshots live
            (see above).
        include_optimizer: bool. Also snapshot and restore the optimizer's variables (moments,
            iteration count), so that training can continue from a consistent state.
        verbose: int. 1 prints one line when the sentinel fires; 0 is silent.

    Raises:
        ValueError: For an unknown `on_nonfinite` or `keep_last_good`, a non-positive
            `snapshot_every` or `batch_size`, or `data` that is not a 2- or 3-tuple.

    Example:

    ```python
    sentinel = xstable.callbacks.NaNSentinel(
        report_dir="nan_report", data=(x, y), batch_size=32
    )
    model.fit(x, y, batch_size=32, shuffle=False, callbacks=[sentinel])
    if sentinel.triggered:
        print(sentinel.report_text)
    ```
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
        super().__init__()
        if on_nonfinite not in _ON_NONFINITE:
            raise ValueError(
                f"`on_nonfinite` must be one of {_ON_NONFINITE}. "
                f"Received: on_nonfinite={on_nonfinite!r}"
            )
        if keep_last_good not in _KEEP_LAST_GOOD:
            raise ValueError(
                f"`keep_last_good` must be one of {_KEEP_LAST_GOOD}. "
                f"Received: keep_last_good={keep_last_good!r}"
            )
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int):
            raise TypeError(
                "`snapshot_every` must be an int (snapshot before every N-th step). "
                f"Received: snapshot_every={snapshot_every!r}"
            )
        if snapshot_every < 1:
            raise ValueError(
                f"`snapshot_every` must be >= 1. Received: snapshot_every={snapshot_every}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                "`batch_size` must be a positive int equal to the `batch_size` given to "
                f"`fit`. Received: batch_size={batch_size!r}"
            )
        if data is not None and (not isinstance(data, (tuple, list)) or len(data) not in (2, 3)):
            raise ValueError(
                "`data` must be a tuple `(x, y)` or `(x, y, sample_weight)` holding the "
                f"training data passed to `fit`. Received: data of type {type(data).__name__}"
                + (f" with {len(data)} elements" if isinstance(data, (tuple, list)) else "")
            )
        if not isinstance(include_optimizer, bool):
            raise TypeError(
                "`include_optimizer` must be a bool (also snapshot the optimizer's state). "
                f"Received: include_optimizer={include_optimizer!r}. Pass True or False."
            )
        if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose not in (0, 1):
            raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}.")
        if report_dir is not None and not isinstance(report_dir, (str, os.PathLike)):
            raise TypeError(
                "`report_dir` must be a str, an os.PathLike or None. "
                f"Received: report_dir={report_dir!r} of type {type(report_dir).__name__}."
            )
        self.report_dir = None if report_dir is None else os.fspath(report_dir)
        self.on_nonfinite = on_nonfinite
        self.data = None if data is None else tuple(data)
        self.batch_size = batch_size
        self.snapshot_every = snapshot_every
        self.keep_last_good = keep_last_good
        self._snapshot_place = keep_last_good
        if keep_last_good == "auto":
            self._snapshot_place = "host" if active_device() == "cpu" else "device"
        self.include_optimizer = include_optimizer
        self.verbose = verbose
        self._reset()

    # ----------------------------------------------------------------- state
    def _reset(self):
        self.triggered = False
        self.report = None
        self.report_text = None
        self.report_paths = None
        self._snapshots = deque(maxlen=2)
        self.skipped_steps = 0
        self._expected_iterations = 0
        self._global_step = 0
        self._epoch = 0
        self._batch_begin = 0

    def _variables(self, model):
        model_variables = list(model.weights)
        optimizer_variables = []
        if self.include_optimizer and getattr(model, "optimizer", None) is not None:
            optimizer_variables = list(model.optimizer.variables)
        return model_variables, optimizer_variables

    def _copy(self, variable):
        if self._snapshot_place == "device":
            return keras.ops.copy(variable.value)
        # np.array(copy=True): on CPU, torch and JAX can hand out views of live buffers.
        return np.array(keras.ops.convert_to_numpy(variable.value), copy=True)

    def _take_snapshot(self, batch):
        model = self.model  # On JAX this attaches the training state to the variables.
        model_variables, optimizer_variables = self._variables(model)
        self._snapshots.append(
            _Snapshot(
                [self._copy(v) for v in model_variables],
                [self._copy(v) for v in optimizer_variables],
                epoch=self._epoch,
                batch=batch,
                global_step=self._global_step,
                where=self._snapshot_place,
            )
        )

    def _restore(self, snapshot):
        model = self.model
        model_variables, optimizer_variables = self._variables(model)
        for variable, value in zip(model_variables, snapshot.model_values, strict=True):
            variable.assign(value)
        # An optimizer that was built after the snapshot has more variables than it holds;
        # then only the model is restored (the report says how many variables were restored).
        if len(optimizer_variables) == len(snapshot.optimizer_values):
            for variable, value in zip(optimizer_variables, snapshot.optimizer_values, strict=True):
                variable.assign(value)
            return len(optimizer_variables)
        return 0

    def _weights_finite_on_device(self):
        model_variables, _ = self._variables(self.model)
        flags = [
            keras.ops.all(keras.ops.isfinite(v.value))
            for v in model_variables
            if _is_float_variable(v)
        ]
        if not flags:
            return True
        return bool(keras.ops.convert_to_numpy(keras.ops.all(keras.ops.stack(flags))))

    # ------------------------------------------------------------- callbacks
    def on_train_begin(self, logs=None):
        self._reset()
        self._expected_iterations = self._read_iterations()

    def _read_iterations(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _step_was_skipped(self):
        """Whether the optimizer applied no update at this step (read after a failure only)."""
        iterations = self._read_iterations()
        skipped = iterations < self._expected_iterations
        self._expected_iterations = iterations
        return skipped

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.triggered:
            return
        self._batch_begin = batch
        if self._global_step % self.snapshot_every == 0 or not self._snapshots:
            self._take_snapshot(batch)

    def on_train_batch_end(self, batch, logs=None):
        if self.triggered:
            return
        failing_step = self._global_step
        steps = max(1, batch - self._batch_begin + 1)
        self._global_step += steps
        self._expected_iterations += steps
        bad = self._first_nonfinite(logs)
        if bad is not None and self._step_was_skipped():
            # The optimizer (a GuardedOptimizer, or the loss scaler of mixed precision) left
            # this step out: weights and slots are untouched, nothing to undo. Keras's
            # running means would carry the NaN on for the rest of the epoch: restart them.
            for metric in self.model.metrics:
                if metric.name in ("loss", "compile_metrics"):
                    metric.reset_state()
            self.skipped_steps += 1
            return
        if bad is not None:
            name, value = bad
            self._fire(
                kind="loss" if name == "loss" else "metric",
                name=name,
                value=value,
                logs=logs,
                epoch=self._epoch,
                batch=(self._batch_begin, batch),
                failing_step=failing_step,
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.triggered:
            return
        bad = self._first_nonfinite(logs)
        if bad is not None:
            name, value = bad
            self._fire(
                kind="loss" if name == "loss" else "metric",
                name=name,
                value=value,
                logs=logs,
                epoch=epoch,
                batch=None,
                failing_step=None,
            )
            return
        if not self._weights_finite_on_device():
            self._fire(
                kind="weight",
                name="model.weights",
                value=float("nan"),
                logs=logs,
                epoch=epoch,
                batch=None,
                failing_step=None,
            )

    def _first_nonfinite(self, logs):
        # "loss" first, so that a NaN loss is reported as such rather than as a metric.
        ignored = _GUARD_DIAGNOSTICS if _has_guarded_optimizer(self.model) else ()
        for name in sorted(logs or {}, key=lambda key: (key != "loss", key)):
            if name in ignored:
                continue
            value = _log_value(logs[name])
            if value is not None and not math.isfinite(value):
                return name, value
        return None

    # ---------------------------------------------------------------- firing
    def _choose_snapshot(self, failing_step):
        """Newest finite snapshot taken no later than `failing_step`, and whether newer ones
        had to be passed over because they already held non-finite values."""
        passed_over_nonfinite = False
        for snapshot in reversed(self._snapshots):
            if failing_step is not None and snapshot.global_step > failing_step:
                continue
            if snapshot.all_finite():
                return snapshot, passed_over_nonfinite
            passed_over_nonfinite = True
        return None, passed_over_nonfinite

    def _fire(self, kind, name, value, logs, epoch, batch, failing_step):
        self.triggered = True
        model = self.model
        weights_finite_now = self._weights_finite_on_device()
        snapshot = None
        passed_over_nonfinite = False
        restored_optimizer_variables = 0
        if failing_step is not None or not weights_finite_now:
            # A non-finite loss means the update of that step used non-finite gradients:
            # undo it even if the weights still look finite.
            snapshot, passed_over_nonfinite = self._choose_snapshot(failing_step)
            if snapshot is not None:
                restored_optimizer_variables = self._restore(snapshot)

        report = {
            "report": "xstable.callbacks.NaNSentinel",
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "trigger": {
                "kind": kind,
                "name": name,
                "value": value,
                "epoch": epoch,
                "batch": None if batch is None else batch[1],
                "global_step": failing_step,
            },
            "logs": {key: _log_value(val) for key, val in (logs or {}).items()},
            "weights_finite_at_trigger": weights_finite_now,
            "restored": self._describe_restore(
                snapshot, failing_step, weights_finite_now, restored_optimizer_variables
            ),
            "action": "raised" if self.on_nonfinite == "raise" else "stopped",
            "offending_batch": None,
            "data_nonfinite_rows": None,
            "locate_nonfinite": None,
            "environment": library_versions(),
        }
        replay_batch = self._replay_batch(snapshot, batch, passed_over_nonfinite)
        report["offending_batch"] = replay_batch
        if self.data is not None:
            report["data_nonfinite_rows"] = _nonfinite_rows(self.data)
        report["locate_nonfinite"] = self._locate(model, replay_batch)

        self.report = _jsonable(report)
        self.report_text = format_report_text(self.report)
        if self.report_dir is not None:
            json_path = atomic_write_text(
                os.path.join(self.report_dir, REPORT_JSON_NAME),
                json.dumps(self.report, indent=2, allow_nan=False) + "\n",
            )
            text_path = atomic_write_text(
                os.path.join(self.report_dir, REPORT_TEXT_NAME), self.report_text
            )
            self.report_paths = {"json": json_path, "text": text_path}
        message = self._one_line_summary()
        if self.verbose:
            print(message)
        if self.on_nonfinite == "raise":
            raise NonFiniteError(message + "\n\n" + self.report_text)
        model.stop_training = True

    def _describe_restore(
        self, snapshot, failing_step, weights_finite_now, restored_optimizer_variables
    ):
        if snapshot is None:
            if failing_step is None and weights_finite_now:
                return {"done": False, "why": "the weights were finite; left in place"}
            return {
                "done": False,
                "why": "no finite snapshot was available; the weights were left as they are",
            }
        steps_lost = None if failing_step is None else failing_step - snapshot.global_step
        return {
            "done": True,
            "snapshot_before_global_step": snapshot.global_step,
            "snapshot_epoch": snapshot.epoch,
            "snapshot_batch": snapshot.batch,
            "steps_undone": None if steps_lost is None else steps_lost + 1,
            "exact_state_before_failing_step": steps_lost == 0,
            "model_variables": len(snapshot.model_values),
            "optimizer_variables": restored_optimizer_variables,
            "kept_on": snapshot.where,
        }

    def _replay_batch(self, snapshot, batch, passed_over_nonfinite):
        """The batch to replay from the restored state, numbered as Keras numbers it.

        After a non-finite loss or metric it is the failing batch, unless the snapshots taken
        after the restored one already held non-finite weights: then the damage was done by
        the step right after the restored snapshot, so that batch is replayed. After an
        epoch-end trigger it is the batch right after the restored snapshot.
        """
        if batch is not None and not passed_over_nonfinite:
            epoch, (first, last) = self._epoch, batch
        elif snapshot is not None:
            epoch, first, last = snapshot.epoch, snapshot.batch, snapshot.batch
        else:
            return None
        description = {
            "epoch": epoch,
            "first_batch": first,
            "last_batch": last,
            "rows": None,
            "rows_valid_only_if": "fit(..., shuffle=False) with the same batch_size",
        }
        if self.data is not None:
            start = first * self.batch_size
            stop = (last + 1) * self.batch_size
            n = _num_rows(self.data[0])
            description["rows"] = [start, min(stop, n)] if start < n else None
        return description

    def _locate(self, model, replay_batch):
        if self.data is None:
            return {"skipped": _LOCATE_UNAVAILABLE}
        if replay_batch is None or replay_batch["rows"] is None:
            return {"skipped": "the offending batch lies outside `data`"}
        start, stop = replay_batch["rows"]
        pieces = [_slice_rows(part, start, stop) for part in self.data]
        x, y = pieces[0], pieces[1]
        sample_weight = pieces[2] if len(pieces) == 3 else None
        try:
            from xstable.diagnosis import locate_nonfinite
        except ImportError as error:
            return {"skipped": f"xstable.diagnosis.locate_nonfinite is unavailable: {error}"}
        try:
            location = locate_nonfinite(model, x, y, sample_weight=sample_weight)
        except Exception as error:  # The report must still be written.
            return {"error": f"{type(error).__name__}: {error}"}
        if location is None:
            return {
                "found": False,
                "why": "one training step on this batch from the restored weights is finite; "
                "the failure needs the steps between the snapshot and the failure, or the "
                "batch was shuffled (use snapshot_every=1 and fit(shuffle=False) to replay "
                "it exactly)",
            }
        # locate_nonfinite numbers rows within the batch; the report also gives them in `data`.
        data_rows = [start + int(row) for row in getattr(location, "rows", [])]
        return {
            "found": True,
            "location": location.to_dict(),
            "data_rows": data_rows,
            "summary": str(location),
        }

    def _one_line_summary(self):
        trigger = self.report["trigger"]
        where = f"epoch {trigger['epoch']}"
        if trigger["batch"] is not None:
            where += f", batch {trigger['batch']}"
        restored = self.report["restored"]
        restored_text = (
            f"restored the state from before global step {restored['snapshot_before_global_step']}"
            if restored["done"]
            else f"weights not restored ({restored['why']})"
        )
        paths = ""
        if self.report_paths:
            paths = f"; report: {self.report_paths['text']}"
        return (
            f"NaNSentinel: non-finite {trigger['kind']} `{trigger['name']}`={trigger['value']} "
            f"at {where}; {restored_text}; training {self.report['action']}{paths}"
        )


def _num_rows(x):
    leaves = keras.tree.flatten(x)
    return int(np.shape(leaves[0])[0]) if leaves else 0


def _slice_rows(part, start, stop):
    if part is None:
        return None
    return keras.tree.map_structure(lambda array: array[start:stop], part)


def _nonfinite_rows(data, limit=20):
    """Rows of the training data holding NaN or Inf, per part (x, y, sample_weight)."""
    found = {}
    for name, part in zip(("x", "y", "sample_weight"), data, strict=False):
        if part is None:
            continue
        bad_rows = None
        for leaf in keras.tree.flatten(part):
            array = np.asarray(leaf)
            if not np.issubdtype(array.dtype, np.floating):
                continue
            rows = ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
            bad_rows = rows if bad_rows is None else (bad_rows | rows)
        if bad_rows is not None and bad_rows.any():
            indices = np.flatnonzero(bad_rows)
            found[name] = {"count": int(indices.size), "first_rows": indices[:limit].tolist()}
    return found


def format_report_text(report):
    """Renders a NaNSentinel report dict as readable text."""
    trigger = report["trigger"]
    lines = ["NaNSentinel report", "=" * 18, ""]
    where = f"epoch {trigger['epoch']}"
    if trigger["batch"] is not None:
        where += f", batch {trigger['batch']} (global step {trigger['global_step']})"
    else:
        where += " (end of epoch)"
    lines.append(f"What:   non-finite {trigger['kind']} `{trigger['name']}` = {trigger['value']}")
    lines.append(f"When:   {where}")
    lines.append(f"Action: training {report['action']}")
    restored = report["restored"]
    if restored["done"]:
        exact = (
            "exactly the state before the failing step"
            if restored["exact_state_before_failing_step"]
            else "an older state"
        )
        lines.append(
            f"Restored: weights and optimizer state from before global step "
            f"{restored['snapshot_before_global_step']} (epoch {restored['snapshot_epoch']}, "
            f"batch {restored['snapshot_batch']}); {exact}; "
            f"{restored['model_variables']} model and {restored['optimizer_variables']} "
            f"optimizer variables."
        )
    else:
        lines.append(f"Restored: nothing ({restored['why']})")
    finite_logs = ", ".join(f"{key}={value}" for key, value in sorted(report["logs"].items()))
    lines.append(f"Logs:   {finite_logs or '(none)'}")
    batch = report.get("offending_batch")
    if batch:
        rows = batch["rows"]
        rows_text = (
            f"rows {rows[0]}..{rows[1] - 1} of `data` (valid only with "
            f"{batch['rows_valid_only_if']})"
            if rows
            else "rows unknown (no `data` given)"
        )
        lines.append(
            f"Replayed batch: epoch {batch['epoch']}, batches {batch['first_batch']}.."
            f"{batch['last_batch']}: {rows_text}"
        )
    nonfinite_rows = report.get("data_nonfinite_rows")
    if nonfinite_rows:
        for part, info in nonfinite_rows.items():
            lines.append(
                f"Training data: `{part}` has {info['count']} row(s) with NaN/Inf, first: "
                f"{info['first_rows']}"
            )
    elif nonfinite_rows == {}:
        lines.append("Training data: no NaN/Inf anywhere in `data`.")
    locate = report.get("locate_nonfinite") or {}
    lines.append("")
    lines.append("locate_nonfinite on the replayed batch:")
    if locate.get("found"):
        lines.extend("  " + line for line in str(locate["summary"]).splitlines())
        if locate.get("data_rows"):
            lines.append(f"  Those batch rows are rows {locate['data_rows'][:20]} of `data`.")
    elif "skipped" in locate:
        lines.append(f"  skipped: {locate['skipped']}")
    elif "error" in locate:
        lines.append(f"  failed: {locate['error']}")
    else:
        lines.append(f"  nothing non-finite: {locate.get('why', '')}")
    env = report["environment"]
    lines.append("")
    lines.append(
        f"Environment: keras {env['keras']}, {env['backend']} {env['backend_version']}, "
        f"numpy {env['numpy']}, python {env['python']}; written {report['time_utc']}"
    )
    return "\n".join(lines) + "\n"

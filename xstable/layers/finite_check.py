"""`FiniteCheck`: a pass-through layer that catches NaN and Inf where they first appear.

Common sources of non-finite values, in the order they are usually met: NaN/Inf already in
the data; activations that overflow because inputs are unscaled or the learning rate is too
high; ops used outside their domain (log or sqrt of a non-positive value, 0/0); and
gradients of ops with an infinite derivative (sqrt, log, norm at 0). A `FiniteCheck` placed
after a layer (or after every layer, via `insert_finite_checks`) names the first place a
batch goes bad, instead of a "loss: nan" several steps later.

How each policy acts, per execution mode:

| policy    | eager (TF run_eagerly, torch)  | jax.jit (JAX)                | TF graph/XLA, torch.compile |
|-----------|--------------------------------|------------------------------|-----------------------------|
| "raise"   | raises in the layer call (JAX  | monitor: raises as a later   | raises at batch end through |
|           | fit step, no monitor: warns)   | batch begins, by epoch end   | `StabilityMonitor`          |
|           |                                | (no monitor: host callback   |                             |
|           |                                | warns)                       |                             |
| "warn"    | warns in the layer call        | as raise, warning            | warns at batch end (monitor)|
| "replace" | replaces NaN/±Inf, counts      | same                         | same                        |
| "count"   | counts; `<name>_nonfinite` log | same (exact in epoch logs)   | same                        |

Counting happens on the device, in a non-trainable variable: with only finite values no
check reads anything back to the host in compiled code. Eager calls that look at the host
anyway (raise/warn, and every policy on eager torch CPU, where ops are synchronous) first
read a one-op probe, `sum(x)` (half precision: `sum(x * 0)`), and count exactly only when it
is not finite; a built check whose probe reads finite returns its input without going
through Keras's `Layer.__call__` at all. Traced TF and JAX code does the same on the device:
`cond(isfinite(probe), 0, exact count)`.
"""

import contextlib
import functools
import math
import warnings

import keras
import numpy as np
from keras import ops

from xstable import _counter_reset, backend
from xstable.errors import POLICIES, NonFiniteError, check_policy

__all__ = ["FiniteCheck", "FiniteCheckMonitor", "POLICIES"]


_TIPS = (
    "Debugging tips:\n"
    "1. Run xstable.diagnosis.locate_nonfinite(model, x_batch, y_batch) on the offending "
    "batch: it names the stage, layer and rows where the first NaN/Inf arose.\n"
    "2. NaN/Inf in the data: clean it, or put FiniteCheck(policy='replace') after the input.\n"
    "3. Values that grow before they turn Inf: standardise the inputs, lower the learning "
    "rate, or clip gradients (optimizer clipnorm=1.0).\n"
    "4. log/sqrt/division of a value that can reach 0: guard the op's domain."
)

# (layer, count) reports that a raise-policy check deferred to its FiniteCheckMonitor.
_pending_reports = []
# While > 0 (locate_nonfinite runs a diagnostic step), raise/warn/count are suspended.
_suspended = [0]


@contextlib.contextmanager
def suspend_checks():
    """Makes every FiniteCheck a pure pass-through (replace still replaces) in this block."""
    _suspended[0] += 1
    try:
        yield
    finally:
        _suspended[0] -= 1


def _in_stateless_scope():
    """True inside a `keras.StatelessScope`, which every JAX training step runs in.

    Such a step is stateless even when run eagerly: an exception inside it loses the
    model's state. A scope entered here records the scope it nests in.
    """
    with keras.StatelessScope() as scope:
        return scope.original_scope is not None


def _nonfinite_message(name, count, context="", rows=None):
    where = f" {context}" if context else ""
    shown = ""
    if rows:
        listed = ", ".join(str(r) for r in rows[:20])
        more = f" (+{len(rows) - 20} more)" if len(rows) > 20 else ""
        shown = f" Batch rows: {listed}{more}."
    return (
        f"FiniteCheck `{name}` found {int(count)} non-finite value(s) (NaN or ±Inf) in its "
        f"input{where}.{shown}\n{_TIPS}"
    )


def _count_nonfinite(x):
    """Number of NaN/±Inf entries of `x`, as a float32 scalar; the fastest exact form per backend.

    Both forms are plain keras.ops and give the same count; which is faster differs on CPU:
    - torch: ops yielding bool tensors are slow on CPU, so count with float arithmetic:
      `x * 0` is 0 for finite values and NaN for NaN and ±Inf, and `nan_to_num(., nan=1)` then
      sums to the count, without the autograd nodes `stop_gradient` spares.
    - TensorFlow and JAX: `isfinite` is one fast kernel, while Keras's TF `nan_to_num` is three
      `where`s and five more ops unless XLA fuses them.
    """
    dtype = _standard_dtype(x.dtype)
    if not backend.COUNTS_WITH_FLOAT_ARITHMETIC:
        return ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "float32"))
    flags = ops.nan_to_num(ops.stop_gradient(x) * 0.0, nan=1.0)
    if dtype == "float32":
        return ops.sum(flags)
    if dtype != "float64":
        flags = ops.cast(flags, "float32")  # float16 sums stop being exact above 2048
    return ops.cast(ops.sum(flags), "float32")


def _count_nonfinite_after_probe(x):
    """The exact count only when the one-op probe is not finite, else 0: for traced TF/JAX code.

    On CPU `sum(x)` costs a fraction of the exact count (`sum(cast(!isfinite(x)))`), and a
    `lax.cond` / `tf.cond` runs only the branch taken, so a clean batch pays for the probe
    alone.

    Same value as `_count_nonfinite`: a finite probe proves every entry finite (count 0), and
    a non-finite one runs the exact count (which clears a false alarm from an overflowing
    sum of finite values).
    """
    return ops.cond(
        ops.isfinite(_nonfinite_probe(x)),
        lambda: ops.zeros((), "float32"),
        lambda: _count_nonfinite(x),
    )


def _nonfinite_probe(x):
    """A scalar that is finite when every entry of `x` is: `sum(x)` (half precision: `sum(x * 0)`).

    Any NaN makes the sum NaN and any ±Inf makes it ±Inf or NaN, so a finite probe proves the
    input finite. The converse can fail only when a float32/float64 sum of finite values
    overflows (entries near 1e34 and up): a false alarm, which the exact count that follows
    clears. One op on float32 (cheaper than `sum(x * 0)`, which writes a full product first).
    float16 and bfloat16
    keep `sum(x * 0)`, whose terms are all 0 for finite entries: a plain sum of a few
    thousand O(1) activations would already overflow float16 and alarm on every call.
    """
    x = ops.stop_gradient(x)
    if _standard_dtype(x.dtype) in ("float32", "float64"):
        return ops.sum(x)
    return ops.sum(x * 0.0)


def _has_module_hooks(layer):
    """True when a torch forward (pre-)hook is registered on `layer`.

    torch layers are `torch.nn.Module`s, whose hooks fire only through the full call; other
    backends' layers have neither attribute.
    """
    return bool(
        getattr(layer, "_forward_hooks", None) or getattr(layer, "_forward_pre_hooks", None)
    )


def _probe_reads_finite(leaves):
    """Reads the probe of `leaves` on the host: True proves every entry finite."""
    return math.isfinite(float(_summed(leaves, _nonfinite_probe)))


def _summed(leaves, per_leaf):
    """`per_leaf(leaf)` added up over the floating leaves of one call."""
    total = None
    for leaf in leaves:
        value = per_leaf(leaf)
        total = value if total is None else total + value
    return total


@functools.cache
def _standard_dtype(dtype):
    return keras.backend.standardize_dtype(dtype)


def _is_floating(dtype):
    return "float" in _standard_dtype(dtype)


def _check_replacement(arg_name, value, dtype):
    """A replacement must be a finite number that stays finite in `dtype`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"`{arg_name}` must be a finite number (it replaces non-finite values). "
            f"Received: {arg_name}={value!r} of type {type(value).__name__}."
        )
    if not math.isfinite(float(value)):
        raise ValueError(
            f"`{arg_name}` must be a finite number (it replaces non-finite values). "
            f"Received: {arg_name}={value!r}."
        )
    if _is_floating(dtype) and abs(float(value)) > _largest_finite(dtype):
        raise ValueError(
            f"`{arg_name}` must be representable in the layer's dtype {_standard_dtype(dtype)}"
            f" (largest finite value {_largest_finite(dtype):.6g}); it would become inf. "
            f"Received: {arg_name}={value!r}. Pass a smaller value, or leave posinf/neginf "
            "as None for the dtype's largest value."
        )


def _largest_finite(dtype):
    dtype = _standard_dtype(dtype)
    if dtype == "bfloat16":
        return 3.3895313892515355e38
    return float(np.finfo(dtype).max)


@keras.saving.register_keras_serializable(package="xstable")
class _NonFiniteCountMetric(keras.metrics.Metric):
    """Shows a FiniteCheck's counter in the training logs as `<layer name>_nonfinite`.

    The counter is the layer's own non-trainable variable (updated inside the layer's call
    on every backend, JAX included); the metric only reads it, and resets it when Keras
    resets metrics (start of each epoch / evaluate), so logs show per-epoch counts.
    """

    def __init__(self, counter=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        # A closure, not an attribute, so the counter is not tracked as metric state too
        # (as metric state, JAX would restore its stale copy over the layer's update).
        self._counter = lambda: counter

    def update_state(self, *args, **kwargs):
        return None

    def reset_state(self):
        counter = self._counter()
        if counter is not None and backend.counter_value_or_none(counter) is not None:
            _counter_reset.reset_to_zero(counter)

    def result(self):
        counter = self._counter()
        value = None if counter is None else backend.counter_value_or_none(counter)
        if value is None:
            # Inside a JAX fit step the state lives outside the variable; the epoch logs,
            # read after Keras syncs the state back, carry the exact count.
            return ops.zeros((), "float32")
        # A copy: TF must not put the variable itself into the logs.
        return ops.copy(ops.cast(value, "float32"))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="xstable")
class FiniteCheck(keras.layers.Layer):
    """Passes its input through and checks it for NaN and ±Inf, acting by `policy`.

    Put it after any layer (or use `xstable.layers.insert_finite_checks(model)` to put one
    after every layer). The output equals the input (`policy="replace"`: with non-finite
    values replaced). Every policy counts non-finite input values in the non-trainable
    variable `nonfinite_count`, on the device; compiled code never reads it back to the host.

    Policies:
        - `"raise"`: raise `xstable.NonFiniteError` naming the layer and the count. In eager
          execution the layer call raises; in compiled code (XLA, `jax.jit`,
          `torch.compile`) the error is raised when the batch ends by a
          `xstable.callbacks.StabilityMonitor` callback (pass it to `fit`). Inside a JAX
          training step
          (`jax.jit`, or `run_eagerly=True`) without a monitor it warns instead
          (`RuntimeWarning` with the same text): an exception there would fail a step that
          owns the model's state, losing every weight. On JAX the monitor has the step
          traced without a host callback and raises when a later batch begins (naming the
          bad batch), at the latest when the epoch ends: see `StabilityMonitor`. Without
          a monitor the warning comes from a host callback in every compiled step, and JAX
          on CPU then runs the step synchronously (the call returns only when the step is
          done), which costs noticeably more than with the monitor.
        - `"warn"`: emit a `RuntimeWarning` with the same message, keep training.
        - `"replace"`: replace NaN by `nan`, +Inf by `posinf` and -Inf by `neginf`
          (defaults: 0, and the largest finite value of the dtype with the sign).
        - `"count"`: only count; the per-epoch count appears in `fit` logs and History as
          `<layer name>_nonfinite`.

    Args:
        policy: str. One of `"raise"`, `"warn"`, `"replace"`, `"count"`.
        nan: float. Replacement for NaN under `"replace"`. Defaults to `0.0`.
        posinf: float or None. Replacement for +Inf; `None` means the dtype's largest value.
        neginf: float or None. Replacement for -Inf; `None` means the dtype's lowest value.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: If `policy` is not one of the four, or a replacement is not finite.
        xstable.NonFiniteError: Under `"raise"`, when the input holds NaN or ±Inf.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(8, activation="relu"),
    ...     FiniteCheck(policy="count", name="after_dense"),
    ...     keras.layers.Dense(1),
    ... ])
    >>> model.compile("adam", "mse")
    >>> history = model.fit(x, y, verbose=0)
    >>> history.history["after_dense_nonfinite"]   # non-finite activations per epoch
    """

    def __init__(self, policy="raise", nan=0.0, posinf=None, neginf=None, **kwargs):
        super().__init__(**kwargs)
        check_policy(policy, POLICIES)
        if nan is None:
            raise TypeError(
                "`nan` must be a finite number (it replaces NaN). Received: nan=None. "
                "Pass e.g. nan=0.0."
            )
        for arg_name, value in (("nan", nan), ("posinf", posinf), ("neginf", neginf)):
            if value is not None:
                _check_replacement(arg_name, value, self.compute_dtype)
        self.policy = policy
        self.nan = float(nan)
        self.posinf = None if posinf is None else float(posinf)
        self.neginf = None if neginf is None else float(neginf)
        self.supports_masking = True
        self.nonfinite_count = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            name="nonfinite_count",
        )
        if policy == "count":
            self.count_metric = _NonFiniteCountMetric(
                self.nonfinite_count, name=f"{self.name}_nonfinite"
            )

    def __call__(self, *args, **kwargs):
        # Eager fast path: a built check whose input reads finite on the host returns it as
        # is, without Keras's layer-call machinery, which on eager torch costs more than the
        # check itself.
        # Anything else (symbolic or compiled calls, non-finite input, a recorder wrapping
        # `call`, keyword arguments other than the call-context ones such as `training`,
        # which a Functional model passes and a FiniteCheck has no use for) takes the full
        # path below.
        if (
            len(args) == 1
            and all(name in getattr(self, "_call_context_args", ("training",)) for name in kwargs)
            and self._passes_clean_on_host(args[0])
        ):
            self._called = True
            return args[0]
        return super().__call__(*args, **kwargs)

    def _passes_clean_on_host(self, inputs):
        """True when Keras's `__call__` would change nothing and the probe reads finite.

        Keras's call would only convert the input's dtype (not when it already is the input
        dtype; a Keras without `Layer.input_dtype` always takes the full path), check an
        `input_spec`, add an activity-regularizer loss, relayout the output under a
        `keras.distribution`, or carry a mask over (the output is the input object, so its
        mask stays with it). Diagnostics that wrap the instance's `call`
        (`locate_nonfinite`), `suspend_checks()` and torch forward hooks registered on the
        layer get the full path. A probe that does not read finite sends the call down the
        full path too, which probes again before counting: twice only on that rare path.
        """
        if (
            not self.built
            or _suspended[0]
            or "call" in vars(self)
            or _has_module_hooks(self)
            or not keras.ops.is_tensor(inputs)
            or not _is_floating(inputs.dtype)
            or (
                getattr(self, "_convert_input_args", True)
                and _standard_dtype(inputs.dtype) != getattr(self, "input_dtype", None)
            )
            or self.input_spec is not None
            or self.activity_regularizer is not None
            or keras.distribution.distribution() is not None
            or not self._host_decides(inputs)
        ):
            return False
        return _probe_reads_finite([inputs])

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs, *args, **kwargs):
        return keras.tree.map_structure(
            lambda t: keras.KerasTensor(t.shape, dtype=t.dtype, sparse=False), inputs
        )

    def _floating_leaves(self, inputs):
        if not isinstance(inputs, (list, tuple, dict)):
            candidates = [inputs]  # the usual single tensor: no tree walk
        else:
            candidates = keras.tree.flatten(inputs)
        return [
            t
            for t in candidates
            if t is not None and _is_floating(getattr(t, "dtype", "int32"))
        ]

    def call(self, inputs):
        leaves = self._floating_leaves(inputs)
        if not leaves:
            return inputs
        if _suspended[0]:
            return self._replace(inputs) if self.policy == "replace" else inputs
        if self._host_decides(leaves[0]):
            return self._call_deciding_on_host(inputs, leaves)
        probe_first = backend.PROBES_BEFORE_COUNTING and not (
            backend.is_concrete(leaves[0])
        )
        count = _summed(leaves, _count_nonfinite_after_probe if probe_first else _count_nonfinite)
        # Under tf.distribute each replica sees its shard: sum first, so every replica's
        # copy of the counter holds the global count.
        count = backend.replica_sum(count)
        if self.policy in ("raise", "warn") and backend.is_concrete(count):
            # Eager, several tf.distribute replicas (the count had to be all-reduced first).
            value = float(count)
            if value > 0:
                self.nonfinite_count.assign_add(count)
                self._act(value, rows=self._rows(leaves))
            return inputs
        self.nonfinite_count.assign_add(count)
        if self.policy == "replace":
            return self._replace(inputs)
        if self.policy in ("raise", "warn"):
            self._report_from_compiled_code(count)
        return inputs

    def _host_decides(self, leaf):
        """True when this call may look at the values on the host to decide what to do.

        Eager raise/warn read a result on the host anyway (to raise in the layer call);
        eager torch on CPU runs every op synchronously, so any policy may read for free. Not
        with several tf.distribute replicas: their count is a collective every replica must
        join, whatever its own shard holds.
        """
        if not backend.is_concrete(leaf) or backend.replicas_in_sync() > 1:
            return False
        return self.policy in ("raise", "warn") or backend.reads_without_waiting(leaf)

    def _call_deciding_on_host(self, inputs, leaves):
        """The eager path: a cheap probe first, the exact count only if it finds something."""
        if _probe_reads_finite(leaves):
            # Nothing to count or replace: adding 0 to the counter would change nothing.
            return inputs
        count = _summed(leaves, _count_nonfinite)
        if float(count) == 0.0:
            return inputs  # the probe's sum of finite values overflowed: a false alarm
        self.nonfinite_count.assign_add(count)
        if self.policy == "replace":
            return self._replace(inputs)
        if self.policy in ("raise", "warn"):
            self._act(float(count), rows=self._rows(leaves))
        return inputs

    def _replace(self, inputs):
        def clean(t):
            dtype = getattr(t, "dtype", None)
            if dtype is None or not _is_floating(dtype):
                return t
            largest = _largest_finite(t.dtype)
            for arg_name in ("nan", "posinf", "neginf"):
                if getattr(self, arg_name) is not None:
                    _check_replacement(arg_name, getattr(self, arg_name), t.dtype)
            posinf = largest if self.posinf is None else self.posinf
            neginf = -largest if self.neginf is None else self.neginf
            finite = ops.isfinite(t)
            replacement = ops.where(
                ops.isnan(t),
                ops.cast(self.nan, t.dtype),
                ops.where(t > 0, ops.cast(posinf, t.dtype), ops.cast(neginf, t.dtype)),
            )
            return ops.where(finite, t, replacement)

        return keras.tree.map_structure(clean, inputs)

    def _report_from_compiled_code(self, count):
        if backend.HOST_CALLBACKS and not getattr(self, "_defer_to_monitor", False):
            # jax.jit code without a FiniteCheckMonitor watching: a host callback reports.
            backend.call_on_host_if_positive(count, self._act_from_compiled_code)
        # Otherwise (a monitor traced this step on JAX; TF graph/XLA; torch.compile):
        # FiniteCheckMonitor reads the counter when the batch ends. A JAX step traced
        # without the callback runs asynchronously; with it, JAX runs the whole step
        # synchronously.

    def _rows(self, leaves):
        rows = set()
        for leaf in leaves:
            bad = ~np.isfinite(np.asarray(ops.convert_to_numpy(leaf), dtype=np.float64))
            if bad.ndim:
                rows.update(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1)).tolist())
        return sorted(rows)

    def _act(self, count, rows=None, context=""):
        if self.policy == "raise" and getattr(self, "_defer_to_monitor", False):
            # An exception inside a JAX train step leaves the model's variables detached
            # from the trainer's state; the monitor re-attaches them, then raises.
            _pending_reports.append((self, count, rows))
            return
        message = _nonfinite_message(self.name, count, context=context, rows=rows)
        if self.policy == "raise":
            if backend.STATELESS_TRAINING and _in_stateless_scope():
                # A JAX trainer step run eagerly (`run_eagerly=True`) is still stateless: an
                # exception here loses every weight, as in jitted code (measured).
                self._warn_instead_of_raising(message, "a JAX training step")
                return
            raise NonFiniteError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _warn_instead_of_raising(self, message, where):
        warnings.warn(
            f"{message}\npolicy='raise' cannot raise inside {where} without destroying the "
            "model's weights. Pass `callbacks=[xstable.callbacks.StabilityMonitor()]` to fit: "
            "it raises NonFiniteError when the batch ends, with the weights kept. Training "
            "goes on.",
            RuntimeWarning,
            stacklevel=4,
        )

    def _act_from_compiled_code(self, count):
        count = float(np.asarray(count))
        context = "(reported from compiled JAX code)"
        if self.policy == "raise" and not getattr(self, "_defer_to_monitor", False):
            # An exception raised here fails the jitted step after Keras's JAX trainer has
            # donated the model's state to it: the weights would be lost (measured: every
            # variable reads None afterwards). Warn instead, and say how to get the raise.
            message = _nonfinite_message(self.name, count, context=context)
            self._warn_instead_of_raising(message, "a jax.jit training step")
            return
        self._act(count, context=context)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"policy": self.policy, "nan": self.nan, "posinf": self.posinf, "neginf": self.neginf}
        )
        return config


def _finite_checks(model):
    from xstable._layer_tree import walk_layers

    return [layer for _, layer, _ in walk_layers(model) if isinstance(layer, FiniteCheck)]


class FiniteCheckMonitor(keras.callbacks.Callback):
    """Deprecated: pass `xstable.callbacks.StabilityMonitor()` to `fit` instead.

    `StabilityMonitor` serves `FiniteCheck` layers exactly as this callback does (it runs one
    inside itself) and also watches the loss, the weights and a `GuardedOptimizer`.

    Raises or warns for `FiniteCheck` layers at the end of every batch of compiled code.

    Inside XLA (TensorFlow `jit_compile`), `jax.jit` and `torch.compile` a layer cannot raise
    a Python exception; the monitor makes the `"raise"` and `"warn"` policies take effect
    when the batch ends, with `xstable.NonFiniteError` naming the layer, the batch and the
    count. On TensorFlow graphs and `torch.compile` it reads the counters of the raise/warn
    checks once per `every_n_batches` batches (one small device-to-host copy; those steps
    have finished when the batch ends). In eager execution the layers act themselves and
    the monitor reads nothing.

    On JAX (`jax.jit`) the monitor never makes the host wait for the device. It has the
    steps traced without the checks' host callback (a callback makes JAX run the whole
    step synchronously), keeps Keras's asynchronous callback dispatch on (it is
    `async_safe` there), and when the next batch begins it queues a copy of the counters
    and reads every earlier copy the device has already computed. A NaN/Inf in batch `b`
    is therefore reported, naming batch `b`, when a later batch begins (once the device
    has finished step `b`), and at the latest when the epoch (or the
    `evaluate`/`predict` call) ends, where the monitor waits for the last copy.

    Args:
        every_n_batches: int. Read the counters every this many batches (compiled code).

    Example:

    >>> model.fit(x, y, callbacks=[FiniteCheckMonitor()])
    """

    def __init__(self, every_n_batches=1, _internal=False):
        super().__init__()
        if not _internal:
            warnings.warn(
                "`xstable.layers.FiniteCheckMonitor` is deprecated: pass "
                "`callbacks=[xstable.callbacks.StabilityMonitor()]` to `fit`, which serves "
                "FiniteCheck layers the same way.",
                DeprecationWarning,
                stacklevel=2,
            )
        if (
            isinstance(every_n_batches, bool)
            or not isinstance(every_n_batches, int)
            or every_n_batches < 1
        ):
            raise ValueError(
                "`every_n_batches` must be a positive integer. "
                f"Received: every_n_batches={every_n_batches!r}."
            )
        self.every_n_batches = every_n_batches
        self._checks = []
        self._seen = {}
        # JAX: (mode, first batch, last batch, stacked counter copy) not read back yet.
        self._queued = []
        # JAX: (mode, batch) of the step last dispatched, and the first batch of this run
        # of batches not covered by a queued copy yet.
        self._current = None
        self._first_unqueued = None
        # fit() runs evaluate() inside it: count nesting so validation does not deactivate.
        self._depth = 0

    @property
    def async_safe(self):
        # Keras dispatches the batch-end hooks of async-safe callbacks to a worker thread
        # (JAX and torch). On JAX this monitor does its work when batches begin, in the
        # main thread, and its batch-end hooks do nothing: Keras may keep the dispatch
        # asynchronous, which any callback that is not async-safe turns off (each batch
        # end would then convert the logs to floats, waiting for the step).
        return backend.STATELESS_TRAINING

    def _enter(self):
        if self._depth == 0:
            _pending_reports.clear()
            self._queued, self._current, self._first_unqueued = [], None, None
            self._checks = [
                c for c in _finite_checks(self.model) if c.policy in ("raise", "warn")
            ]
            defer = backend.STATELESS_TRAINING
            for check in self._checks:
                object.__setattr__(check, "_defer_to_monitor", defer)
            if self._checks and self._jax_traces_steps():
                _use_step_functions_traced(self.model, with_monitor=True)
            if self._checks and self._needs_device_read():
                self._seen = dict(zip(map(id, self._checks), self._read_counts(), strict=True))
        self._depth += 1

    def _leave(self, completely=False):
        self._depth = 0 if completely else max(0, self._depth - 1)
        if self._depth == 0:
            self._queued, self._current, self._first_unqueued = [], None, None
            if self._checks and self._jax_traces_steps():
                _use_step_functions_traced(self.model, with_monitor=False)
            for check in self._checks:
                object.__setattr__(check, "_defer_to_monitor", False)
            _pending_reports.clear()

    def _jax_traces_steps(self):
        return backend.STATELESS_TRAINING and backend.compiles_train_step(self.model)

    def _needs_device_read(self):
        return backend.compiles_train_step(self.model)

    def _read_counts(self):
        """The raise/warn counters, read now (a device-to-host copy that waits)."""
        values = [backend.counter_value_or_none(c.nonfinite_count) for c in self._checks]
        if any(v is None for v in values):
            # A JAX trainer holds the state outside the variables: put it back first.
            self.model.jax_state_sync()
            values = [c.nonfinite_count.value for c in self._checks]
        return np.asarray(ops.convert_to_numpy(ops.stack(values)), dtype=np.float64).tolist()

    def _new_counts(self, counts):
        """(layer, new count) for every check whose counter rose since the last read."""
        found = []
        for layer, count in zip(self._checks, counts, strict=True):
            previous = self._seen.get(id(layer), 0.0)
            new = count - previous if count >= previous else count
            self._seen[id(layer)] = count
            if new > 0:
                found.append((layer, new))
        return found

    # ---- JAX: queue copies of the counters when a batch begins, read the ready ones ----

    def _queue_jax_counts(self, always):
        """Queues a copy of the counters as the last step left them; nothing waits.

        Called before the next step is dispatched, in the main thread: Keras's public
        `jax_state_sync()` puts the trainer's state into the variables, and one stacked copy
        is queued because the next step donates the state's own buffers. Between copies
        (`every_n_batches` > 1) the counters accumulate; a copy covers every batch since
        the one before it.
        """
        if self._current is None or not self._jax_traces_steps():
            return
        mode, batch = self._current
        if not always and batch % self.every_n_batches != 0:
            return
        first = self._first_unqueued if self._first_unqueued is not None else batch
        self._first_unqueued = None
        self.model.jax_state_sync()
        counters = ops.stack([c.nonfinite_count.value for c in self._checks])
        self._queued.append((mode, first, batch, counters))

    def _read_queued_jax_counts(self, wait):
        """(layer, count, rows, context) from the queued copies ready now (all if `wait`)."""
        found = []
        while self._queued and (wait or self._queued[0][3].is_ready()):
            mode, first, last, counters = self._queued.pop(0)
            counts = np.asarray(counters, dtype=np.float64).tolist()
            where = f"batch {last}" if first >= last else f"batches {first}-{last}"
            context = f"during {mode} {where}"
            found += [(layer, new, None, context) for layer, new in self._new_counts(counts)]
        return found

    def _jax_reports(self, wait, queue_always=False):
        """Reports from the step just run (eager: the layers'; jit: the counters ready)."""
        found = self._pending(*self._current) if self._current is not None else []
        self._queue_jax_counts(always=wait or queue_always)
        return found + self._read_queued_jax_counts(wait)

    def _jax_batch_begins(self, mode, batch):
        if not self._checks or not backend.STATELESS_TRAINING:
            return  # TF and torch read when the batch ends
        # A validation run inside fit begins: the train batches so far get their copy.
        switching = self._current is not None and self._current[0] != mode
        self._report(self._jax_reports(wait=False, queue_always=switching))
        self._current = (mode, batch)
        if self._first_unqueued is None:
            self._first_unqueued = batch

    # ---- every backend ----------------------------------------------------------------

    def _pending(self, mode, batch):
        """The reports eager raise-policy calls deferred to the monitor (JAX)."""
        found = [(layer, count, rows, f"during {mode} batch {batch}")
                 for layer, count, rows in _pending_reports]
        _pending_reports.clear()
        return found

    def _batch_ends(self, mode, batch):
        """TF graphs, torch.compile: read the counters of the step just finished."""
        if self._checks and self._needs_device_read() and batch % self.every_n_batches == 0:
            context = f"during {mode} batch {batch}"
            self._report([(layer, new, None, context)
                          for layer, new in self._new_counts(self._read_counts())])

    def _ends(self):
        """JAX: reports the last step and waits for every counter copy still unread."""
        if self._checks and backend.STATELESS_TRAINING:
            found = self._jax_reports(wait=True)
            self._current, self._first_unqueued = None, None
            self._report(found)

    def _report(self, found):
        if not found:
            return
        for layer, count, rows, context in found:
            if layer.policy == "warn":
                layer._act(count, rows=rows, context=context)
        raising = [item for item in found if item[0].policy == "raise"]
        if raising:
            # fit() will not call on_train_end after this exception: stop deferring now, and
            # on JAX put the trainer's state back into the model's variables first.
            sync = getattr(self.model, "jax_state_sync", None)
            if callable(sync):
                sync()
            self._leave(completely=True)
            layer, count, rows, context = raising[0]
            layer._act(count, rows=rows, context=context)

    def on_train_begin(self, logs=None):
        self._enter()

    def on_train_end(self, logs=None):
        self._ends()
        self._leave()

    def on_epoch_end(self, epoch, logs=None):
        self._ends()

    def on_test_begin(self, logs=None):
        self._enter()

    def on_test_end(self, logs=None):
        self._ends()
        self._leave()

    def on_predict_begin(self, logs=None):
        self._enter()

    def on_predict_end(self, logs=None):
        self._ends()
        self._leave()

    def on_train_batch_begin(self, batch, logs=None):
        self._jax_batch_begins("train", batch)

    def on_test_batch_begin(self, batch, logs=None):
        self._jax_batch_begins("test", batch)

    def on_predict_batch_begin(self, batch, logs=None):
        self._jax_batch_begins("predict", batch)

    def on_train_batch_end(self, batch, logs=None):
        if not backend.STATELESS_TRAINING:
            self._batch_ends("train", batch)

    def on_test_batch_end(self, batch, logs=None):
        if not backend.STATELESS_TRAINING:
            self._batch_ends("test", batch)

    def on_predict_batch_end(self, batch, logs=None):
        if not backend.STATELESS_TRAINING:
            self._batch_ends("predict", batch)


_STEP_FUNCTION_KINDS = ("train", "test", "predict")


def _use_step_functions_traced(model, with_monitor):
    """Installs `model`'s JAX step functions traced with (or without) a monitor watching.

    A raise/warn check traced while a monitor watches has no host callback, so the two
    kinds of trace differ. Both are kept on the model and swapped, so a monitor costs one
    extra trace per model, not one per `fit`. A step function that is not the one installed
    last (the model was compiled again) makes the cached other kind stale.
    """
    cache = model.__dict__.get("_xstable_step_functions")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_xstable_step_functions", cache)
    for kind in _STEP_FUNCTION_KINDS:
        attribute = f"{kind}_function"
        current = getattr(model, attribute, None)
        if cache.get((kind, not with_monitor), current) is not current:
            cache.pop((kind, with_monitor), None)  # recompiled since: the other trace is stale
        cache[(kind, not with_monitor)] = current
        replacement = cache.get((kind, with_monitor))
        if replacement is None:
            setattr(model, attribute, None)
            if with_monitor:
                _make_step_function_with_its_own_trace(model, kind)
            elif current is not None:
                getattr(model, f"make_{kind}_function")(force=True)
            replacement = getattr(model, attribute)
            cache[(kind, with_monitor)] = replacement
        setattr(model, attribute, replacement)


def _make_step_function_with_its_own_trace(model, kind):
    """Has Keras make `model`'s `kind` step function around a callable of its own.

    Keras's JAX trainer jits the bound method `model.train_step` (test/predict alike), and
    JAX caches traces by the function jitted: every bound method of the same model is equal,
    so a step made again would reuse the trace made with (or without) the host callback.
    A `functools.partial`, set on the instance while Keras makes the function, gets a trace
    of its own.
    """
    step = f"{kind}_step"
    object.__setattr__(model, step, functools.partial(getattr(type(model), step), model))
    try:
        getattr(model, f"make_{kind}_function")(force=True)
    finally:
        object.__delattr__(model, step)

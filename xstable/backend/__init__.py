"""The one place where xstable talks to TensorFlow, PyTorch or JAX directly.

Everything else in xstable is written with `keras.ops` and public `keras.*`, and asks this
module for what those cannot express: compiling a function, gradients outside `fit`, whether
a value can be read on the host now, `tf.distribute` replicas, devices. Keras picks its backend
once, at import (`KERAS_BACKEND`); so does this module, which exposes the functions of
`xstable/backend/{_tensorflow,_torch,_jax}.py` under one interface. On another Keras backend
(numpy, openvino) the `keras.ops` forms of `_portable.py` apply, and the diagnostics that need
autodiff or compilation raise a `ValueError` naming the backend.

Capabilities (booleans) say how the active backend runs a step, so callers choose by what a
backend does, never by its name:

- `STATELESS_TRAINING`: the train step is a pure function of the state (JAX): variables are
  detached during `fit`, and an exception inside the step loses the weights.
- `HOST_CALLBACKS`: traced code can call back into Python (`call_on_host_if_positive`).
- `EAGER_BY_DEFAULT`: Keras runs the train step eagerly unless asked to compile (torch).
- `COMPILES_FUNCTIONS`: `CompiledFunction` traces (TF, JAX); elsewhere it runs eagerly.
- `OPTIMIZERS_HAVE_STATELESS_APPLY`: Keras's optimizers offer `stateless_apply` (not TF).
- `PROBES_BEFORE_COUNTING`, `COUNTS_WITH_FLOAT_ARITHMETIC`, `ONE_HOT_OP_IS_FASTEST`,
  `ABS_AS_MAXIMUM`, `COND_AROUND_NAN_IMPUTATION`, `CROSSENTROPY_BY_AUTODIFF`: which of two
  equivalent `keras.ops` forms runs faster on this backend (same values either way).
"""

import keras

NAME = keras.config.backend()
if NAME == "tensorflow":
    from xstable.backend import _tensorflow as _active
elif NAME == "torch":
    from xstable.backend import _torch as _active
elif NAME == "jax":
    from xstable.backend import _jax as _active
else:
    from xstable.backend import _portable as _active

__all__ = [
    "NAME",
    "STATELESS_TRAINING",
    "HOST_CALLBACKS",
    "EAGER_BY_DEFAULT",
    "COMPILES_FUNCTIONS",
    "OPTIMIZERS_HAVE_STATELESS_APPLY",
    "PROBES_BEFORE_COUNTING",
    "COUNTS_WITH_FLOAT_ARITHMETIC",
    "ONE_HOT_OP_IS_FASTEST",
    "ABS_AS_MAXIMUM",
    "COND_AROUND_NAN_IMPUTATION",
    "CROSSENTROPY_BY_AUTODIFF",
    "device_name",
    "disable_tf32",
    "train_step_mode",
    "compiles_train_step",
    "is_concrete",
    "reads_without_waiting",
    "call_on_host_if_positive",
    "counter_value_or_none",
    "update_persists",
    "CompiledFunction",
    "variable_values",
    "jit_if_jax",
    "share_compiled_programs",
    "zero_nonfinite_gradient",
    "value_and_gradients",
    "value_and_probe_gradients",
    "global_norm",
    "scale_all",
    "replicas_in_sync",
    "replica_sum",
    "global_mean_divisor",
    "cross_replica_guarded_apply",
]

STATELESS_TRAINING = _active.STATELESS_TRAINING
HOST_CALLBACKS = _active.HOST_CALLBACKS
EAGER_BY_DEFAULT = _active.EAGER_BY_DEFAULT
COMPILES_FUNCTIONS = _active.COMPILES_FUNCTIONS
OPTIMIZERS_HAVE_STATELESS_APPLY = _active.OPTIMIZERS_HAVE_STATELESS_APPLY
PROBES_BEFORE_COUNTING = _active.PROBES_BEFORE_COUNTING
COUNTS_WITH_FLOAT_ARITHMETIC = _active.COUNTS_WITH_FLOAT_ARITHMETIC
ONE_HOT_OP_IS_FASTEST = _active.ONE_HOT_OP_IS_FASTEST
ABS_AS_MAXIMUM = _active.ABS_AS_MAXIMUM
COND_AROUND_NAN_IMPUTATION = _active.COND_AROUND_NAN_IMPUTATION
CROSSENTROPY_BY_AUTODIFF = _active.CROSSENTROPY_BY_AUTODIFF


# ---- runtime -----------------------------------------------------------------------------

device_name = _active.device_name
"""`device_name()`: the device the backend computes on by default, e.g. `"cpu"`, `"gpu:0 (...)"`."""

disable_tf32 = _active.disable_tf32
"""`disable_tf32()`: turns TensorFloat-32 matmuls off (a no-op where there are none)."""

train_step_mode = _active.train_step_mode
"""`train_step_mode(jit_compile)`: how a compiled, not `run_eagerly`, train step runs."""

compiles_train_step = _active.compiles_train_step
"""`compiles_train_step(model)`: True when `model`'s compiled train step runs traced."""

# ---- host reads --------------------------------------------------------------------------

is_concrete = _active.is_concrete
"""`is_concrete(tensor)`: True when `tensor` is an eager value that Python can read now.

Inside compiled code (a TF graph, `jax.jit`, `torch.compile`) a host read is impossible or a
graph break."""

reads_without_waiting = _active.reads_without_waiting
"""`reads_without_waiting(tensor)`: True when reading `tensor` now waits for no device work
(eager torch on CPU, whose ops run synchronously)."""

call_on_host_if_positive = _active.call_on_host_if_positive
"""`call_on_host_if_positive(count, callback)`: in traced code, runs `callback(count)` on the
host only when `count > 0` (only where `HOST_CALLBACKS`)."""

counter_value_or_none = _active.counter_value_or_none
"""`counter_value_or_none(variable)`: the value, or None while a JAX `fit` holds it detached."""

update_persists = _active.update_persists
"""`update_persists(variable, like)`: True when `variable.assign(...)` made in the computation
producing `like` is kept (not so for a variable outside a traced JAX step's state)."""

# ---- compilation -------------------------------------------------------------------------

CompiledFunction = _active.CompiledFunction
"""`CompiledFunction(fn, variable_groups=(), eager_calls=None)`: `fn` traced once, run compiled.

Compiled is the form the backend's own `fit` uses by default: a `tf.function` graph
(autograph off) on TensorFlow, `jax.jit` on JAX, eager execution on torch. A function called
only once is never traced on TensorFlow (tracing costs several eager runs there); JAX traces
on the first call.

Args:
    fn: `fn(variable_values, *args)`: `variable_values` holds a list of the current values of
        each group of `variable_groups`; `args` are tensors, nested lists/dicts of tensors or
        `None`. Returns a structure of tensors.
    variable_groups: List of lists of `keras.Variable` read on every call (inside the graph
        on TensorFlow, passed in as arguments on JAX).
    eager_calls: How many calls run eagerly before the function is traced; `None` for the
        backend's default (1 on TensorFlow, 0 on JAX, every call on torch).

Attributes:
    traces: How many times the function was traced (0 on torch).
    eager_runs: How many calls ran eagerly.

Raises:
    ValueError: On a Keras backend other than tensorflow, torch and jax.
"""

variable_values = _active.variable_values
"""`variable_values(variables)`: the variables' current values as plain tensors."""

jit_if_jax = _active.jit_if_jax
"""`jit_if_jax(fn)`: `jax.jit(fn)` on JAX, whose eager ops compile one by one; `fn` elsewhere."""

share_compiled_programs = _active.share_compiled_programs
"""`share_compiled_programs(directory)`: on JAX, caches compiled programs in `directory` so an
identical train step (another target of the same architecture) is loaded, not compiled."""

# ---- gradients ---------------------------------------------------------------------------

zero_nonfinite_gradient = _active.zero_nonfinite_gradient
"""`zero_nonfinite_gradient(x)`: identity forward; the backward pass zeroes NaN/inf entries
of the gradient flowing through the returned tensor."""

value_and_gradients = _active.value_and_gradients
"""`value_and_gradients(fn, variables)`: `(value, aux, gradients)` of `fn() -> (value, aux)`
with respect to `variables` (zeros for a variable that does not influence `value`). Eager."""

value_and_probe_gradients = _active.value_and_probe_gradients
"""`value_and_probe_gradients(fn, weight_values)`: `(loss, aux, weight_grads, probe_grads)`.

`fn(weight_values, make_probe) -> (loss, aux)`; `make_probe(tensor)` returns a zero tensor to
add to an intermediate value, whose gradient is the gradient with respect to that value. `fn`
must make the same probes, in the same order, whenever it runs. Works eagerly and inside
`CompiledFunction`. Raises `ValueError` on a backend other than tensorflow, torch and jax."""

# ---- gradient norms ----------------------------------------------------------------------

global_norm = _active.global_norm
"""`global_norm(grads)`: float32 L2 norm of all gradients together (`None` ignored); NaN or inf
when a gradient is, inf when the sum of squares overflows."""

scale_all = _active.scale_all
"""`scale_all(grads, scale)`: every gradient times the scalar `scale` (`None` kept)."""

# ---- data parallelism --------------------------------------------------------------------

replicas_in_sync = _active.replicas_in_sync
"""`replicas_in_sync()`: how many replicas' gradients the optimizer step must combine.

More than 1 only inside a `tf.distribute` replica context: on JAX the step is one SPMD program
over the global batch, and PyTorch's DistributedDataParallel averages gradients before
`apply`."""

replica_sum = _active.replica_sum
"""`replica_sum(value)`: `value` summed over the TF replicas of this step (a collective); the
value itself elsewhere (JAX sees the global batch; torch counts stay per process)."""

global_mean_divisor = _active.global_mean_divisor
"""`global_mean_divisor(local_count)`: the divisor that turns a replica's masked sum into its
share of the global mean (a collective; see docs/distributed.md)."""

cross_replica_guarded_apply = _active.cross_replica_guarded_apply
"""`cross_replica_guarded_apply(grads, trainable_variables, guard, inner_apply)`: a guarded
optimizer step decided once on the all-reduced gradients of all TF replicas.

`guard(global_grads) -> (grads, apply, *extra)` runs once in the cross-replica context;
`inner_apply(shares, *extra)` runs in every replica when `apply`, with the guard's gradients
divided by the number of replicas (the inner optimizer sums them again). Raises `ValueError`
outside a TF replica context with several replicas."""

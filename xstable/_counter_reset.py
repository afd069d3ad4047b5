"""Resets a scalar counter variable to 0 as cheaply as each backend allows.

Keras resets every metric on every `train_on_batch`/`test_on_batch` call, so a counter's reset
is on the hot path of those loops. Three savings, measured on this project's 2-core CPU machine
(`benchmarks/probe_op_costs.py`, eager, one scalar variable, 2026-12-02 00:52 UTC):

- Read before writing: a counter is almost always 0 already (nothing non-finite happened), and
  reading a scalar is cheaper than assigning one: `float(variable.value)` 4 us on torch, 12 us
  on JAX and 79 us on TF, against an assign of 24 us (torch, cached zero), 145 us (JAX,
  `ops.zeros`) and 184 us (TF, cached zero). The read is a device-to-host copy; resets happen
  where Keras already waits for the step (`train_on_batch` returns host values) or once per
  epoch in `fit`.
- Read the cheapest way for the backend, timed where it matters, right after a training step
  (`benchmarks/probe_counter_read.py`, 300 rounds, medians, 2026-12-06 04:44 UTC): on JAX
  `np.asarray(array)` takes 18 us where `float(array)` takes 87 us for the same ready scalar
  (in isolation both are a few us), and a training step 0.961 [0.941-0.978] of the time
  with one counter (`bench_losses.py --only scce --copies 3 --rounds 201 --block-seconds 0.05
  --skip-saturation --against c371d3d`, JAX, about 04:50 UTC). On torch
  `float` (12 us) and `np.asarray` (9 us) are close, and torch keeps `float`. On TF `float`
  (126 us) beat `np.asarray` (271 us) and `.numpy()` (208 us); calling the read op itself,
  `float(tf.raw_ops.ReadVariableOp(...))`, skips the variable's own read path: 79.6 us
  against 95.1 for `float(variable.value)` (same probe, TF, 2026-12-06 10:16 UTC), and the
  whole zero check 83.6 us. In `train_on_batch` that is inside the noise (paired against the
  `float` read, `bench_losses.py --only bce,cce,scce --against 73a560c --rounds 601`:
  0.994-1.001).
- Where an assign is needed, the zero is created once per backend and dtype (eager TF:
  `assign(ops.zeros(()))` is two eager ops, 418 us in the same run, against 184 us for a
  cached zero), and only when it was created eagerly, so a reset traced inside a
  `tf.function` never caches (or leaks) a symbolic tensor.

Never a cached zero on JAX: a JAX variable holds the very array assigned to it, and Keras's
JAX trainer donates the state arrays to each jitted step, which deletes them; a cached zero
would be deleted by the first step after a reset and break the next reset.
"""

import keras
import numpy as np
from keras import ops

from xstable.losses import _backend_tracing

__all__ = ["reset_to_zero"]

_ZEROS = {}


def _zero(dtype):
    if keras.config.backend() == "jax":
        return ops.zeros((), dtype=dtype)
    key = (keras.config.backend(), keras.backend.standardize_dtype(dtype))
    zero = _ZEROS.get(key)
    if zero is None:
        zero = ops.zeros((), dtype=dtype)
        if _backend_tracing.is_eager(zero):
            _ZEROS[key] = zero
    return zero


def _jax_reads_zero(value):
    import jax

    if isinstance(value, jax.core.Tracer):
        return False
    # Not float(value): 18 against 87 us after a step. `.item()`: a numpy comparison adds ~10.
    return np.asarray(value).item() == 0.0


def _tf_reads_zero(value):
    import tensorflow as tf

    if not tf.executing_eagerly():
        return False
    handle = getattr(value, "handle", None)
    if handle is None:  # not the resource variable itself (e.g. an autocast copy)
        return float(value) == 0.0
    # The read op itself: 51-56 us right after a step, against 73-80 for float(variable).
    return float(tf.raw_ops.ReadVariableOp(resource=handle, dtype=value.dtype)) == 0.0


def _eager_reads_zero(value):
    if not _backend_tracing.is_eager(value):
        return False
    return float(value) == 0.0


def _is_zero_now(variable):
    """True if the variable's eager value reads as 0; False if it is not, or cannot be read."""
    try:
        value = variable.value
        backend = keras.config.backend()
        if backend == "jax":
            return _jax_reads_zero(value)
        if backend == "tensorflow":
            return _tf_reads_zero(value)
        return _eager_reads_zero(value)
    except (TypeError, RuntimeError, ValueError):
        # A detached JAX variable (inside `fit`), a deleted (donated) JAX array, a symbolic
        # TF tensor: fall back to writing.
        return False


def reset_to_zero(variable):
    """Assigns 0 to the scalar `variable` (skipped when it already reads 0)."""
    if _is_zero_now(variable):
        return
    variable.assign(_zero(variable.dtype))

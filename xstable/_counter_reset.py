"""Resets a scalar counter variable to 0 without building a new zero tensor every time.

Keras resets every metric on every `train_on_batch`/`test_on_batch` call. On eager TF,
`variable.assign(ops.zeros(()))` is two eager ops, ~330 us on this project's 2-core CPU
machine, against ~140 us for assigning a zero created once (torch: ~45 vs ~32 us;
`benchmarks/probe_op_costs.py`).
The zero is cached per backend and dtype, and only when it was created eagerly, so a reset
traced inside a `tf.function` never caches (or leaks) a symbolic tensor.

Never on JAX: a JAX variable holds the very array assigned to it, and Keras's JAX trainer
donates the state arrays to each jitted step, which deletes them; a cached zero would be
deleted by the first step after a reset and break the next reset.
"""

import keras
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


def reset_to_zero(variable):
    """Assigns 0 to the scalar `variable`."""
    variable.assign(_zero(variable.dtype))

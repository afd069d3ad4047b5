"""The optimizer update of `record_step`, traced once per optimizer and weights.

Computes the weights one optimizer step would produce from given gradients, leaving the
optimizer and the weights untouched, and max|new weight| of each in one vector:

- JAX: the optimizer's own `stateless_apply` under `jax.jit`, fed the optimizer's current
  state each call (what Keras's JAX train step does).
- TensorFlow (no `stateless_apply`): a scratch copy of the optimizer, built once on scratch
  copies of the weights; each call loads the weights and the optimizer's current state into
  the scratch variables and applies the update inside one `tf.function`.
- torch (eager `fit`): `stateless_apply` eagerly, as before.

An optimizer not yet built (no `fit` so far) starts from its initial state, as `fit` would.
"""

import weakref

import keras
import numpy as np
from keras import ops

from xstable import backend
from xstable.backend import CompiledFunction, variable_values
from xstable.inspection._instrumented_step import max_abs_vector
from xstable.inspection._optimizer_step import apply_update_without_side_effects

__all__ = []

# Per optimizer: {(weight ids, built, state size): update}. Weak keys; updates hold the
# optimizer weakly.
_UPDATES = weakref.WeakKeyDictionary()


def updated_weights(optimizer, weights, weight_values, grads):
    """Returns `(new_values, new_value_maxima)`; neither `optimizer` nor `weights` change.

    Args:
        optimizer: The `keras.optimizers.Optimizer` whose next step to compute.
        weights: The trainable `keras.Variable`s, in the order of `grads`.
        weight_values: Their current values (tensors).
        grads: The gradients (tensors).

    Returns:
        The new weight values (tensors) and a NumPy vector of max|value| of each.
    """
    if not backend.COMPILES_FUNCTIONS:
        new_values = apply_update_without_side_effects(optimizer, weights, weight_values, grads)
        maxima = max_abs_vector(new_values)
    else:
        built = bool(getattr(optimizer, "built", False))
        key = (tuple(id(w) for w in weights), built, len(optimizer.variables) if built else 0)
        updates = _UPDATES.setdefault(optimizer, {})
        update = updates.get(key)
        if update is None:
            updates.clear()  # another weight list or state layout: earlier traces are stale
            update = _CompiledUpdate(optimizer, weights)
            updates[key] = update
        new_values, maxima = update.run(weight_values, grads)
    return list(new_values), np.asarray(ops.convert_to_numpy(maxima), dtype=np.float64)


class _CompiledUpdate:
    def __init__(self, optimizer, weights):
        built = getattr(optimizer, "built", False)
        self._stateless = backend.STATELESS_TRAINING
        self._copies = [
            keras.Variable(ops.copy(ops.convert_to_tensor(w)), dtype=w.dtype, trainable=True,
                           name=w.name)
            for w in weights
        ]
        # A scratch optimizer on the scratch weights: its variables receive the real
        # optimizer's state when the layouts match (built for these weights, as fit does),
        # else its own initial state, on every call.
        self._scratch = optimizer.__class__.from_config(optimizer.get_config())
        self._scratch.build(self._copies)
        self._initial_state = [ops.copy(v) for v in variable_values(self._scratch.variables)]
        self._use_own_state = bool(built) and len(optimizer.variables) == len(
            self._scratch.variables
        ) and all(
            tuple(a.shape) == tuple(b.shape)
            for a, b in zip(optimizer.variables, self._scratch.variables, strict=True)
        )
        # The optimizer's state is read on each call (inside the graph on TensorFlow).
        groups = [list(optimizer.variables)] if self._use_own_state else [[]]
        self.compiled = CompiledFunction(
            self._stateless_update if self._stateless else self._scratch_update,
            variable_groups=groups,
        )

    def run(self, weight_values, grads):
        return self.compiled(list(grads), list(weight_values))

    def _state(self, group_values):
        return group_values[0] if self._use_own_state else self._initial_state

    def _stateless_update(self, group_values, grads, weight_values):
        state = self._state(group_values)
        new_values, _ = self._scratch.stateless_apply(state, grads, weight_values)
        return list(new_values), max_abs_vector(new_values)

    def _scratch_update(self, group_values, grads, weight_values):
        state = self._state(group_values)
        for copy, value in zip(self._copies, weight_values, strict=True):
            copy.assign(value)
        for variable, value in zip(self._scratch.variables, state, strict=True):
            variable.assign(value)
        self._scratch.apply(grads, self._copies)
        new_values = [ops.convert_to_tensor(c) for c in self._copies]
        # Copies of the values, so that they do not alias the scratch variables.
        new_values = [ops.copy(v) for v in new_values]
        return new_values, max_abs_vector(new_values)

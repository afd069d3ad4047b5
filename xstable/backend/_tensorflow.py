"""The TensorFlow side of xstable's backend seam: `tf.function`, `GradientTape`, `tf.distribute`."""

import keras
import tensorflow as tf

from xstable.backend import _portable
from xstable.backend._portable import (  # noqa: F401  (the interface, re-exported)
    call_on_host_if_positive,
    counter_value_or_none,
    jit_if_jax,
    scale_all,
    share_compiled_programs,
    update_persists,
    zero_nonfinite_gradient,
    zeros_for_missing,
)

__all__ = []

NAME = "tensorflow"
STATELESS_TRAINING = False
HOST_CALLBACKS = False
EAGER_BY_DEFAULT = False
COMPILES_FUNCTIONS = True
# Keras's TF optimizers write through `tf.Variable`s and have no `stateless_apply`.
OPTIMIZERS_HAVE_STATELESS_APPLY = False
# A graph `tf.cond` runs only the branch taken: a clean batch pays for a `sum(x)` probe alone.
PROBES_BEFORE_COUNTING = True
COUNTS_WITH_FLOAT_ARITHMETIC = False
# One `OneHot` kernel; a comparison with class ids is more graph ops.
ONE_HOT_OP_IS_FASTEST = True
# TF graphs on CPU run `log1p(abs(x))` much slower than `log1p(maximum(x, -x))`.
ABS_AS_MAXIMUM = True
COND_AROUND_NAN_IMPUTATION = False
CROSSENTROPY_BY_AUTODIFF = False


# ---- runtime -----------------------------------------------------------------------------


def device_name():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"gpu:0 ({details.get('device_name', 'unknown')})"
    return "cpu"


def disable_tf32():
    tf.config.experimental.enable_tensor_float_32_execution(False)


def train_step_mode(jit_compile):
    return "tf.function + XLA" if jit_compile else "tf.function graph (no XLA)"


def compiles_train_step(model):
    return not getattr(model, "run_eagerly", False)


# ---- host reads --------------------------------------------------------------------------


def is_concrete(tensor):
    return tf.executing_eagerly()


def reads_without_waiting(tensor):
    return False


# ---- compilation -------------------------------------------------------------------------


def variable_values(variables):
    # `keras.ops.convert_to_tensor` returns the variable itself here, which `tf.function`
    # would inspect value by value to build its signature; a read is cheap.
    return [tf.convert_to_tensor(v.value) for v in variables]


class CompiledFunction(_portable.CompiledFunction):
    # Tracing a whole instrumented training step costs several eager runs on TF: a function
    # called only once is never traced; the second call traces it.
    _DEFAULT_EAGER_CALLS = 1

    def _read(self):
        return [variable_values(group) for group in self._groups]

    def _compile(self):
        def traced(*args):
            self.traces += 1
            return self._fn(self._read(), *args)

        # Autograph off: converting xstable's and Keras's Python code is a large part of the
        # tracing time, and Keras 3 layers use `keras.ops.cond` and `while_loop`, not Python
        # control flow on tensors (JAX's jit could not trace that either).
        return tf.function(traced, autograph=False)


# ---- gradients ---------------------------------------------------------------------------


def value_and_gradients(fn, variables):
    variables = list(variables)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        for v in variables:
            tape.watch(v.value)
        value, aux = fn()
    grads = tape.gradient(value, [v.value for v in variables])
    return value, aux, zeros_for_missing(variables, grads)


def value_and_probe_gradients(fn, weight_values):
    weights = [tf.convert_to_tensor(t) for t in weight_values]
    probes = []
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(weights)

        def make_probe(tensor):
            probe = tf.zeros_like(tensor)
            tape.watch(probe)
            probes.append(probe)
            return probe

        loss, aux = fn(weights, make_probe)
    grads = tape.gradient(
        loss, weights + probes, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return loss, aux, list(grads[: len(weights)]), list(grads[len(weights) :])


# ---- gradient norms ----------------------------------------------------------------------


def global_norm(grads):
    # Keras keeps a `tf.IndexedSlices` (an embedding's gradient) sparse: densify it first, so
    # that duplicate indices add up as in the dense gradient before they are squared.
    dense = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    return _portable.global_norm(dense)


# ---- data parallelism --------------------------------------------------------------------


def _replica_context():
    """The current `tf.distribute` replica context if it has more than one replica, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def replicas_in_sync():
    context = _replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_sum(value):
    context = _replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean_divisor(local_count):
    context = _replica_context()
    if context is None:
        return local_count
    if isinstance(local_count, (int, float)):
        local_count = tf.constant(float(local_count), dtype="float32")
    return context.all_reduce(tf.distribute.ReduceOp.SUM, local_count)


def cross_replica_guarded_apply(grads, trainable_variables, guard, inner_apply):
    context = _replica_context()
    if context is None:
        return _portable.cross_replica_guarded_apply(
            grads, trainable_variables, guard, inner_apply
        )
    grads = list(grads)
    present = [i for i, grad in enumerate(grads) if grad is not None]
    if not present:
        raise ValueError(
            "No gradients provided for any variable. Received: grads=[None, ...] for "
            f"{len(grads)} variables."
        )
    num_replicas = context.num_replicas_in_sync
    reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])

    def guarded_step(distribution, reduced):
        global_grads = list(grads)
        for index, grad in zip(present, reduced):
            # All-reduced: every replica holds the same value; the first one's is taken.
            global_grads[index] = distribution.experimental_local_results(grad)[0]
        step_grads, apply, *extra = guard(global_grads)
        # Mirrored copies on each variable's devices, so that the inner optimizer's all-reduce
        # inside `call_for_each_replica` has a per-replica value to reduce.
        shares = [
            None
            if grad is None
            else distribution.extended.broadcast_to(
                grad / num_replicas, destinations=_tf_variable(variable)
            )
            for grad, variable in zip(step_grads, trainable_variables, strict=True)
        ]

        def apply_in_every_replica():
            distribution.extended.call_for_each_replica(inner_apply, args=(shares, *extra))

        keras.ops.cond(apply, apply_in_every_replica, lambda: None)

    context.merge_call(guarded_step, args=(reduced,))


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable

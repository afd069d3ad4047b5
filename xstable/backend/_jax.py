"""The JAX side of xstable's backend seam: `jax.jit`, `jax.value_and_grad`, host callbacks."""

import jax
import jax.numpy as jnp
import keras

from xstable.backend import _portable
from xstable.backend._portable import (  # noqa: F401  (the interface, re-exported)
    cross_replica_guarded_apply,
    global_mean_divisor,
    global_norm,
    replica_sum,
    replicas_in_sync,
    scale_all,
    variable_values,
    zero_nonfinite_gradient,
)

__all__ = []

NAME = "jax"
# Keras's JAX train step is a pure function of the state: variables are detached during
# `fit`, and an exception inside the step loses the weights.
STATELESS_TRAINING = True
HOST_CALLBACKS = True
EAGER_BY_DEFAULT = False
COMPILES_FUNCTIONS = True
OPTIMIZERS_HAVE_STATELESS_APPLY = True
# `lax.cond` runs only the branch taken: a clean batch pays for a `sum(x)` probe alone.
PROBES_BEFORE_COUNTING = True
COUNTS_WITH_FLOAT_ARITHMETIC = False
ONE_HOT_OP_IS_FASTEST = False
ABS_AS_MAXIMUM = False
# A compare and select fused into `AutoScale`'s transform makes XLA CPU split the fusion into
# parallel tasks; a separate NaN test under `cond` keeps it whole.
COND_AROUND_NAN_IMPUTATION = True
# XLA fuses a whole step itself; a custom gradient would only keep it from fusing across a loss.
CROSSENTROPY_BY_AUTODIFF = True


# ---- runtime -----------------------------------------------------------------------------


def device_name():
    device = jax.devices()[0]
    if device.platform == "cpu":
        return "cpu"
    return f"{device.platform}:{device.id} ({device.device_kind})"


def disable_tf32():
    jax.config.update("jax_default_matmul_precision", "highest")


def train_step_mode(jit_compile):
    return "jax.jit (XLA)" if jit_compile else "eager"


def compiles_train_step(model):
    return not getattr(model, "run_eagerly", False) and bool(getattr(model, "jit_compile", True))


# ---- host reads --------------------------------------------------------------------------


def is_concrete(tensor):
    return not isinstance(tensor, jax.core.Tracer)


def reads_without_waiting(tensor):
    return False  # asynchronous dispatch: a read waits for the device


def call_on_host_if_positive(count, callback):
    """In traced code, runs `callback(count_as_numpy)` on the host iff `count > 0`.

    Through `jax.lax.cond` + `jax.debug.callback`: with `count == 0` nothing is copied to the
    host.
    """

    def on_host(value):
        callback(value)

    jax.lax.cond(
        count > 0,
        lambda c: jax.debug.callback(on_host, c),
        lambda c: None,
        count,
    )


def counter_value_or_none(variable):
    # During `fit` the trainer detaches variable values and keeps them in its own state;
    # they are reattached at the end of the epoch.
    try:
        return variable.value
    except TypeError:
        # A detached JAX variable has neither a value nor an initializer to read.
        return None


def update_persists(variable, like):
    # A traced step is stateless: only variables passed in as state get their updates back.
    # A variable read as a concrete value while `like` is traced is not part of that state;
    # assigning a tracer to it would leak.
    return isinstance(variable.value, jax.core.Tracer) or not isinstance(like, jax.core.Tracer)


# ---- compilation -------------------------------------------------------------------------


class CompiledFunction(_portable.CompiledFunction):
    # Eager JAX compiles every op on first use, slower than tracing once: trace at once. The
    # variables' values are passed in, or the jitted function would keep those it traced with.
    _DEFAULT_EAGER_CALLS = 0
    _PASSES_VALUES = True

    def _compile(self):
        def traced(values, *args):
            self.traces += 1
            return self._fn(values, *args)

        return jax.jit(traced)


def jit_if_jax(fn):
    return jax.jit(fn)


def share_compiled_programs(directory):
    jax.config.update("jax_compilation_cache_dir", directory)
    # Cache every program: the train steps of small models compile in well under the
    # default threshold of one second, and they are what repeats.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# ---- gradients ---------------------------------------------------------------------------


def value_and_gradients(fn, variables):
    variables = list(variables)

    def pure(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            value, aux = fn()
        return value, aux

    (value, aux), grads = jax.value_and_grad(pure, has_aux=True)([v.value for v in variables])
    return value, aux, list(grads)


def value_and_probe_gradients(fn, weight_values):
    weight_values = list(weight_values)
    # JAX differentiates only with respect to arguments: learn the probes' shapes from an
    # abstract evaluation (no computation), then pass the probes in as arguments.
    shapes = []

    def record_probe(tensor):
        shapes.append((tensor.shape, tensor.dtype))
        return jnp.zeros(tensor.shape, tensor.dtype)

    jax.eval_shape(lambda w: fn(w, record_probe), weight_values)
    probes = [jnp.zeros(shape, dtype) for shape, dtype in shapes]

    def with_probes(weights, probe_args):
        supply = iter(probe_args)
        return fn(weights, lambda tensor: next(supply))

    (loss, aux), (weight_grads, probe_grads) = jax.value_and_grad(
        with_probes, argnums=(0, 1), has_aux=True
    )(weight_values, probes)
    return loss, aux, list(weight_grads), list(probe_grads)

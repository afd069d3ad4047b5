"""What every backend shares: `keras.ops`-only forms and the answers of a backend without extras.

The backend modules (`tensorflow.py`, `torch.py`, `jax.py`) import from here what they do not
do their own way. A Keras backend xstable has no module for (numpy, openvino) uses this module
as it is: everything that `keras.ops` can express works there, and the diagnostics that need
autodiff or compilation raise a `ValueError` naming the backend.
"""

import keras
from keras import ops

__all__ = []

NAME = keras.config.backend()

# Capabilities and preferences; each backend module sets its own (see `xstable/backend/__init__`).
STATELESS_TRAINING = False
HOST_CALLBACKS = False
EAGER_BY_DEFAULT = False
COMPILES_FUNCTIONS = False
OPTIMIZERS_HAVE_STATELESS_APPLY = True
PROBES_BEFORE_COUNTING = False
COUNTS_WITH_FLOAT_ARITHMETIC = False
ONE_HOT_OP_IS_FASTEST = False
ABS_AS_MAXIMUM = False
COND_AROUND_NAN_IMPUTATION = False
CROSSENTROPY_BY_AUTODIFF = False


def unsupported_backend_error(name=None):
    return ValueError(
        "xstable's diagnostics support the tensorflow, torch and jax backends. "
        f"Received: backend={NAME if name is None else name!r}. "
        "Set KERAS_BACKEND to one of them."
    )


# ---- runtime -----------------------------------------------------------------------------


def device_name():
    return "unknown"


def disable_tf32():
    return None


def train_step_mode(jit_compile):
    return f"jit_compile={jit_compile}"


def compiles_train_step(model):
    return False


# ---- host reads --------------------------------------------------------------------------


def is_concrete(tensor):
    return False


def reads_without_waiting(tensor):
    return False


def call_on_host_if_positive(count, callback):
    raise NotImplementedError(f"No host callbacks in traced code on the {NAME} backend.")


def counter_value_or_none(variable):
    return variable.value


def update_persists(variable, like):
    return True


# ---- compilation -------------------------------------------------------------------------


def variable_values(variables):
    return [ops.convert_to_tensor(v) for v in variables]


class CompiledFunction:
    """`fn` traced once and run compiled, after `eager_calls` eager calls.

    The backend modules say how to compile (`_compile`), whether the variables' values are
    passed in (`_PASSES_VALUES`) and how many calls run eagerly by default.
    """

    _DEFAULT_EAGER_CALLS = 0
    _PASSES_VALUES = False

    def __init__(self, fn, variable_groups=(), eager_calls=None):
        if type(self) is CompiledFunction:  # a backend without a compiled form
            raise unsupported_backend_error()
        self._fn = fn
        self._groups = [list(group) for group in variable_groups]
        self._eager_left = self._DEFAULT_EAGER_CALLS if eager_calls is None else eager_calls
        self._compiled = None
        self.traces = 0
        self.eager_runs = 0

    def __call__(self, *args):
        if self._eager_left > 0:
            self._eager_left -= 1
            self.eager_runs += 1
            return self._fn(self._read(), *args)
        if self._compiled is None:
            self._compiled = self._compile()
        if self._PASSES_VALUES:
            return self._compiled(self._read(), *args)
        return self._compiled(*args)

    def _read(self):
        return [variable_values(group) for group in self._groups]

    def _compile(self):
        raise unsupported_backend_error()


def jit_if_jax(fn):
    return fn


def share_compiled_programs(directory):
    return None


# ---- gradients ---------------------------------------------------------------------------


@ops.custom_gradient
def _zero_nonfinite_gradient_op(x):
    def grad(*args, upstream=None):
        if upstream is None:  # TF and JAX pass it positionally, torch as a keyword
            (upstream,) = args
        return ops.where(ops.isfinite(upstream), upstream, 0.0)

    return x, grad


def zero_nonfinite_gradient(x):
    return _zero_nonfinite_gradient_op(x)


def zeros_for_missing(variables, grads):
    """`grads` with `None` (a variable that did not influence the value) replaced by zeros."""
    return [
        ops.zeros(v.shape, dtype=v.dtype) if g is None else g
        for v, g in zip(variables, grads)
    ]


def value_and_gradients(fn, variables):
    raise NotImplementedError(f"No gradient support for Keras backend {NAME!r}.")


def value_and_probe_gradients(fn, weight_values):
    raise unsupported_backend_error()


# ---- gradient norms ----------------------------------------------------------------------


def safe_sqrt(sum_of_squares):
    positive = ops.greater(sum_of_squares, 0.0)
    safe = ops.where(positive, sum_of_squares, ops.ones_like(sum_of_squares))
    # Not positive means 0 or NaN: pass it through so a NaN gradient gives a NaN norm.
    return ops.where(positive, ops.sqrt(safe), sum_of_squares)


def global_norm(grads):
    squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads if g is not None]
    if not squares:
        return ops.zeros((), dtype="float32")
    return safe_sqrt(ops.sum(ops.stack(squares)))


def scale_all(grads, scale):
    return [None if g is None else ops.multiply(g, ops.cast(scale, g.dtype)) for g in grads]


# ---- data parallelism --------------------------------------------------------------------


def replicas_in_sync():
    return 1


def replica_sum(value):
    return value


def global_mean_divisor(local_count):
    return local_count


def cross_replica_guarded_apply(grads, trainable_variables, guard, inner_apply):
    raise ValueError(
        "`cross_replica_guarded_apply` must be called inside a tf.distribute replica "
        f"context with more than one replica. Received: backend={NAME!r}, "
        f"replicas_in_sync={replicas_in_sync()}. Call it only when `replicas_in_sync() > 1`."
    )

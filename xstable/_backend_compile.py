"""Tracing a Python function into the active backend's compiled form: the one place xstable does.

`keras.ops` has no way to compile a function, so diagnostics that must run a whole training
step fast (`locate_nonfinite`) go through here. The compiled form is the one the backend's
own `fit` uses by default: a `tf.function` graph on TensorFlow, `jax.jit` on JAX, and plain
eager execution on torch (Keras trains eagerly on torch unless asked for `torch.compile`).
"""

import keras

__all__ = ["CompiledFunction", "variable_values"]


def variable_values(variables):
    """Current values of Keras variables as plain tensors (also inside a `tf.function`).

    On TensorFlow `keras.ops.convert_to_tensor` returns the variable itself, which
    `tf.function` would inspect value by value to build its signature; a read is cheap.

    Args:
        variables: Iterable of `keras.Variable`.

    Returns:
        List of tensors of the active backend.
    """
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        return [tf.convert_to_tensor(v.value) for v in variables]
    return [keras.ops.convert_to_tensor(v) for v in variables]


class CompiledFunction:
    """`fn` traced once and run compiled, after running eagerly for its first call on TF.

    Compiled means a `tf.function` graph on TensorFlow and `jax.jit` on JAX; torch always
    runs eagerly, like its `fit`. On TensorFlow, tracing a whole instrumented training step
    of a 50-layer MLP took 4-5x as long as running it eagerly once (12-14 s against
    2.6-3.1 s on a shared 2-core CPU), so a function called only once is never traced
    there; the second call traces it. On JAX, eager execution compiles every op on first
    use and was slower than tracing (14 s against 8 s), so JAX traces on the first call.
    The Python body of `fn` runs on every eager call and once per trace.

    Args:
        fn: `fn(variable_values, *args)`: `variable_values` is a list with the current values
            of each group of `variable_groups` (a list of tensors per group); `args` are
            tensors, nested lists/dicts of tensors, or `None`. Returns a structure of tensors.
        variable_groups: List of lists of `keras.Variable` read on every call. They are read
            inside the compiled function on TensorFlow (a graph reads variables by reference,
            cheaper than passing hundreds of tensors in) and passed in as arguments on JAX (a
            jitted function would otherwise keep the values it saw while tracing).
        eager_calls: How many calls run eagerly before the function is traced; `None`
            for the backend's default (1 on TensorFlow, 0 on JAX, every call on torch).

    Attributes:
        traces: How many times the function was traced (0 on torch).
        eager_runs: How many calls ran eagerly.

    Raises:
        ValueError: On a Keras backend other than tensorflow, torch and jax.
    """

    def __init__(self, fn, variable_groups=(), eager_calls=None):
        backend = keras.config.backend()
        if backend not in ("tensorflow", "jax", "torch"):
            raise ValueError(
                f"xstable's diagnostics support the tensorflow, torch and jax backends. "
                f"Received: backend={backend!r}. Set KERAS_BACKEND to one of them."
            )
        self._backend = backend
        self._fn = fn
        self._groups = [list(group) for group in variable_groups]
        if backend == "torch":
            eager_calls = float("inf")
        elif eager_calls is None:
            eager_calls = 1 if backend == "tensorflow" else 0
        self._eager_left = eager_calls
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
        if self._backend == "jax":
            return self._compiled(self._read(), *args)
        return self._compiled(*args)

    def _read(self):
        return [variable_values(group) for group in self._groups]

    def _compile(self):
        if self._backend == "tensorflow":
            import tensorflow as tf

            def traced(*args):
                self.traces += 1
                return self._fn(self._read(), *args)

            # Autograph off: converting xstable's and Keras's Python code took a third of
            # the tracing time for a 50-layer MLP. Keras 3 layers use `keras.ops.cond` and
            # `while_loop`, not Python control flow on tensors (JAX's jit could not trace
            # that either).
            return tf.function(traced, autograph=False)
        import jax

        def traced_jax(values, *args):
            self.traces += 1
            return self._fn(values, *args)

        return jax.jit(traced_jax)

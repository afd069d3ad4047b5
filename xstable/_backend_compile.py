"""Tracing a Python function into the active backend's compiled form: the one place xstable does.

`keras.ops` has no way to compile a function, so diagnostics that must run a whole training
step fast (`locate_nonfinite`) go through here. The compiled form is the one the backend's
own `fit` uses by default: a `tf.function` graph on TensorFlow, `jax.jit` on JAX, and plain
eager execution on torch (Keras trains eagerly on torch unless asked for `torch.compile`).
"""

import keras

__all__ = ["compile_function", "is_traced", "variable_values"]


def is_traced():
    """True when the active backend compiles functions passed to `compile_function`."""
    return keras.config.backend() in ("tensorflow", "jax")


def compile_function(fn, variable_groups=None):
    """Returns `fn` traced once per argument signature and then run compiled.

    The Python body of `fn` runs only while tracing (on TensorFlow and JAX), so side effects
    in it happen once per new signature; on torch it runs on every call.

    Args:
        fn: Function of tensors (and nested lists/dicts of tensors, or `None`) returning a
            structure of tensors. With `variable_groups`, its first argument is the list of
            the groups' current values (a list of tensors per group).
        variable_groups: Optional list of lists of `keras.Variable` whose current values
            `fn` receives first on every call. They are read inside the compiled function
            on TensorFlow (a graph reads variables by reference, cheaper than passing
            hundreds of tensors in) and passed in as arguments on JAX (a jitted function
            would otherwise keep the values it saw while tracing).

    Returns:
        A callable taking the remaining arguments of `fn`.

    Raises:
        ValueError: On a Keras backend other than tensorflow, torch and jax.
    """
    backend = keras.config.backend()
    groups = None if variable_groups is None else [list(g) for g in variable_groups]
    if backend == "tensorflow":
        import tensorflow as tf

        if groups is None:
            # Autograph on, as in Keras's own train step, so model code with Python control
            # flow on tensors traces the same way here as in `fit`.
            return tf.function(fn)
        return tf.function(lambda *args: fn([variable_values(g) for g in groups], *args))
    if backend == "jax":
        import jax

        jitted = jax.jit(fn)
        if groups is None:
            return jitted
        return lambda *args: jitted([variable_values(g) for g in groups], *args)
    if backend == "torch":
        if groups is None:
            return fn
        return lambda *args: fn([variable_values(g) for g in groups], *args)
    raise ValueError(
        f"xstable's diagnostics support the tensorflow, torch and jax backends. "
        f"Received: backend={backend!r}. Set KERAS_BACKEND to one of them."
    )


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

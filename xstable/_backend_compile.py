"""Tracing a Python function into the active backend's compiled form: the one place xstable does.

`keras.ops` has no way to compile a function, so diagnostics that must run a whole training
step fast (`locate_nonfinite`) go through here. The compiled form is the one the backend's
own `fit` uses by default: a `tf.function` graph on TensorFlow, `jax.jit` on JAX, and plain
eager execution on torch (Keras trains eagerly on torch unless asked for `torch.compile`).
"""

import keras

__all__ = ["compile_function", "is_traced"]


def is_traced():
    """True when the active backend compiles functions passed to `compile_function`."""
    return keras.config.backend() in ("tensorflow", "jax")


def compile_function(fn):
    """Returns `fn` traced once per argument signature and then run compiled.

    The Python body of `fn` runs only while tracing (on TensorFlow and JAX), so side effects
    in it happen once per new signature; on torch it runs on every call.

    Args:
        fn: Function of tensors (and nested lists/dicts of tensors, or `None`) returning a
            structure of tensors.

    Returns:
        A callable with the same signature.

    Raises:
        ValueError: On a Keras backend other than tensorflow, torch and jax.
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # Autograph on, as in Keras's own train step, so model code with Python control flow
        # on tensors traces the same way here as in `fit`.
        return tf.function(fn)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "torch":
        return fn
    raise ValueError(
        f"xstable's diagnostics support the tensorflow, torch and jax backends. "
        f"Received: backend={backend!r}. Set KERAS_BACKEND to one of them."
    )

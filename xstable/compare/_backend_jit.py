"""Compiling a pure function on the active backend, for the per-layer inspection.

JAX runs `keras.ops` eagerly one primitive at a time, compiling each; a forward and backward
pass taken apart layer by layer then costs seconds. Under `jax.jit` it is one compilation.
TensorFlow and torch run such a function fast enough eagerly, and eager TensorFlow keeps the
logits of a sigmoid/softmax output for the loss exactly as its compiled train step does
(BACKEND-NOTES 2), so they are left as they are.
"""

import keras

__all__ = ["jit_if_jax"]


def jit_if_jax(fn):
    """Returns `jax.jit(fn)` on the JAX backend and `fn` itself on the others.

    Args:
        fn: a pure function of arrays (no Keras state read outside a `keras.StatelessScope`).

    Returns:
        A callable with the signature of `fn`.
    """
    if keras.config.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn

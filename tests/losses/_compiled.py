"""Runs a loss eagerly or compiled (tf.function, jax.jit; torch trains eagerly): tests only."""

import keras
import numpy as np

from tests.numerics._grad import value_and_grad

MODES = ("eager", "compiled")


def value_and_grad_in(mode, fn, *args, argnum=0):
    """`value_and_grad(fn, *args)` run eagerly, or inside the backend's compiler."""
    backend = keras.config.backend()
    if mode == "eager" or backend == "torch":
        return value_and_grad(fn, *args, argnum=argnum)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def scalar(x, *rest):
            call_args = list(rest)
            call_args.insert(argnum, x)
            out = fn(*call_args)
            return jnp.sum(out), out

        others = [jnp.asarray(a) for i, a in enumerate(args) if i != argnum]
        step = jax.jit(jax.value_and_grad(scalar, has_aux=True))
        (_, out), grad = step(jnp.asarray(args[argnum]), *others)
        return np.asarray(out), np.asarray(grad)
    import tensorflow as tf

    @tf.function
    def step(*tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors[argnum])
            out = fn(*tensors)
            total = tf.reduce_sum(out)
        grad = tape.gradient(total, tensors[argnum])
        return out, grad if grad is not None else tf.zeros_like(tensors[argnum])

    out, grad = step(*[tf.convert_to_tensor(np.asarray(a)) for a in args])
    return np.asarray(out), np.asarray(grad)


def value_in(mode, fn, *args):
    """`fn(*args)` as NumPy, eagerly or compiled."""
    backend = keras.config.backend()
    if mode == "eager" or backend == "torch":
        return keras.ops.convert_to_numpy(fn(*args))
    if backend == "jax":
        import jax

        return np.asarray(jax.jit(fn)(*args))
    import tensorflow as tf

    return np.asarray(tf.function(fn)(*[tf.convert_to_tensor(np.asarray(a)) for a in args]))

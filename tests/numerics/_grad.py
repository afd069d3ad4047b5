"""Gradients on the active backend, for tests only (library code stays `keras.ops`)."""

import keras
import numpy as np


def value_and_grad(fn, *args, argnum=0):
    """Returns `(fn(*args), d sum(fn(*args)) / d args[argnum])` as NumPy arrays.

    `args` are NumPy arrays; the gradient is taken by the backend's own autodiff
    (`jax.grad`, `torch.autograd`, `tf.GradientTape`).
    """
    backend = keras.config.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        tensors = [jnp.asarray(a) for a in args]

        def scalar(x):
            call_args = list(tensors)
            call_args[argnum] = x
            out = fn(*call_args)
            return jnp.sum(out), out

        (_, out), grad = jax.value_and_grad(scalar, has_aux=True)(tensors[argnum])
        return np.asarray(out), np.asarray(grad)
    if backend == "torch":
        import torch

        tensors = [torch.as_tensor(np.asarray(a)) for a in args]
        tensors[argnum] = tensors[argnum].clone().requires_grad_(True)
        out = fn(*tensors)
        (grad,) = torch.autograd.grad(torch.sum(out), tensors[argnum], allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(tensors[argnum])
        return out.detach().cpu().numpy(), grad.detach().cpu().numpy()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(np.asarray(a)) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors[argnum])
            out = fn(*tensors)
            total = tf.reduce_sum(out)
        grad = tape.gradient(total, tensors[argnum])
        if grad is None:
            grad = tf.zeros_like(tensors[argnum])
        return np.asarray(out), np.asarray(grad)
    raise NotImplementedError(f"No gradient helper for backend {backend!r}")

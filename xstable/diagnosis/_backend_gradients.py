"""Loss and gradients with respect to arbitrary tensors, on every Keras backend.

Keras has no backend-agnostic public gradient API, so this is the one place where
`locate_nonfinite` talks to TensorFlow, torch or JAX autodiff directly. Everything runs
eagerly (no jit), so auxiliary outputs come back as concrete tensors.
"""

import keras

__all__ = []


def value_and_gradients(fn, differentiable):
    """Evaluates `fn(differentiable) -> (loss, aux)` and d(loss)/d(each differentiable tensor).

    Args:
        fn: Callable taking a list of tensors and returning `(scalar_loss, aux)`; `aux` is any
            structure of tensors returned alongside.
        differentiable: List of floating tensors to differentiate with respect to.

    Returns:
        `(loss, aux, gradients)`, with one gradient per entry of `differentiable`; tensors that
        do not influence the loss get zero gradients.
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.convert_to_tensor(t) for t in differentiable]
        with tf.GradientTape() as tape:
            tape.watch(args)
            loss, aux = fn(args)
        grads = tape.gradient(loss, args, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, aux, list(grads)
    if backend == "torch":
        import torch

        args = [torch.as_tensor(t).detach().clone().requires_grad_(True) for t in differentiable]
        with torch.enable_grad():
            loss, aux = fn(args)
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, args, allow_unused=True)
            else:
                grads = [None] * len(args)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(args, grads)]
        aux = keras.tree.map_structure(
            lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux
        )
        return loss.detach(), aux, grads
    if backend == "jax":
        import jax

        (loss, aux), grads = jax.value_and_grad(fn, has_aux=True)(list(differentiable))
        return loss, aux, list(grads)
    raise ValueError(
        f"locate_nonfinite supports the tensorflow, torch and jax backends. "
        f"Received: backend={backend!r}. Set KERAS_BACKEND to one of them."
    )

"""Gradients on the active backend: the one place xstable calls a backend's autodiff directly.

`keras.ops` has no gradient op, so diagnostics that need gradients outside `fit` go through
here: `value_and_gradients` differentiates with respect to Keras variables (comparing backends
layer by layer), `value_and_tensor_gradients` with respect to arbitrary tensors (locating a NaN
in the backward pass with probe tensors). Both run eagerly.
"""

import keras

__all__ = ["value_and_gradients", "value_and_tensor_gradients"]


def value_and_gradients(fn, variables):
    """Evaluates `fn()` and the gradient of its scalar value with respect to `variables`.

    Args:
        fn: `() -> (value, aux)`. `value` is a scalar tensor computed from the current
            values of `variables` (reading them the usual Keras way, e.g. by calling a model);
            `aux` is anything else to return (e.g. intermediate outputs).
        variables: list of `keras.Variable` to differentiate with respect to.

    Returns:
        `(value, aux, gradients)`, gradients aligned with `variables`; a variable that does not
        influence `value` gets a zero gradient.
    """
    backend = keras.config.backend()
    variables = list(variables)
    if backend == "jax":
        import jax

        def pure(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                value, aux = fn()
            return value, aux

        (value, aux), grads = jax.value_and_grad(pure, has_aux=True)(
            [v.value for v in variables]
        )
        return value, aux, list(grads)
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for v in variables:
                tape.watch(v.value)
            value, aux = fn()
        grads = tape.gradient(value, [v.value for v in variables])
    elif backend == "torch":
        import torch

        tensors = [v.value for v in variables]
        with torch.enable_grad():
            value, aux = fn()
            grads = torch.autograd.grad(value, tensors, allow_unused=True)
    else:
        raise NotImplementedError(f"No gradient support for Keras backend {backend!r}.")
    grads = [
        keras.ops.zeros(v.shape, dtype=v.dtype) if g is None else g
        for v, g in zip(variables, grads)
    ]
    return value, aux, grads


def value_and_tensor_gradients(fn, differentiable):
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
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(args, grads, strict=True)]
        aux = keras.tree.map_structure(
            lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux
        )
        return loss.detach(), aux, grads
    if backend == "jax":
        import jax

        (loss, aux), grads = jax.value_and_grad(fn, has_aux=True)(list(differentiable))
        return loss, aux, list(grads)
    raise ValueError(
        f"xstable's diagnostics support the tensorflow, torch and jax backends. "
        f"Received: backend={backend!r}. Set KERAS_BACKEND to one of them."
    )

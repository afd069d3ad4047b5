"""Gradients on the active backend: the one place xstable calls a backend's autodiff directly.

`keras.ops` has no gradient op, so diagnostics that need gradients outside `fit` (locating a
NaN in the backward pass, comparing backends layer by layer) go through `value_and_gradients`.
"""

import keras

__all__ = ["value_and_gradients"]


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

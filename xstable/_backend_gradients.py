"""Gradients on the active backend: the one place xstable calls a backend's autodiff directly.

`keras.ops` has no gradient op, so diagnostics that need gradients outside `fit` go through
here: `value_and_gradients` differentiates with respect to Keras variables (comparing backends
layer by layer), `value_and_probe_gradients` with respect to weights and zero probe tensors
added to intermediate values (locating a NaN in the backward pass). `value_and_gradients` runs
eagerly; `value_and_probe_gradients` also runs inside `tf.function` / `jax.jit`.
`zero_nonfinite_gradient` is an identity whose backward pass zeroes NaN/inf entries: a
`keras.ops.custom_gradient` everywhere but on eager torch, where a tensor hook does the same
for a fraction of the dispatch cost.
"""

import keras
from keras import ops

__all__ = ["value_and_gradients", "value_and_probe_gradients", "zero_nonfinite_gradient"]


@ops.custom_gradient
def _zero_nonfinite_gradient_op(x):
    def grad(*args, upstream=None):
        if upstream is None:  # TF and JAX pass it positionally, torch as a keyword
            (upstream,) = args
        return ops.where(ops.isfinite(upstream), upstream, 0.0)

    return x, grad


def _zero_nonfinite(gradient):
    import torch

    return torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)


def zero_nonfinite_gradient(x):
    """Identity in the forward pass; the backward pass replaces NaN/inf gradient entries by 0.

    Only the gradient flowing back through the returned tensor is changed, not other uses of
    `x`. On eager torch a `keras.ops.custom_gradient` is an `autograd.Function` called from
    Python both ways; there a hook on an alias of `x` does it in one native op, and a tensor
    that needs no gradient (evaluation, `torch.no_grad`) is returned as it is.
    """
    if keras.config.backend() == "torch":
        import torch

        if isinstance(x, torch.Tensor) and not torch.compiler.is_compiling():
            if not x.requires_grad:
                return x
            alias = x.view_as(x)
            alias.register_hook(_zero_nonfinite)
            return alias
    return _zero_nonfinite_gradient_op(x)


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


def value_and_probe_gradients(fn, weight_values):
    """Evaluates `fn` and the gradients of its loss w.r.t. weights and zero "probe" tensors.

    A probe is a zero tensor that `fn` adds to an intermediate value: the gradient of the
    loss with respect to the probe is the gradient with respect to that value. Probes are
    made on demand by `fn`, so their shapes need not be known beforehand. Works eagerly and
    inside `tf.function` / `jax.jit` (see `xstable._backend_compile`).

    Args:
        fn: `fn(weight_values, make_probe) -> (scalar_loss, aux)`. `make_probe(tensor)`
            returns a zero tensor of `tensor`'s shape and dtype, to be added to it; `fn`
            must call it the same number of times, in the same order, whenever it runs.
        weight_values: List of floating tensors (the trainable weights' values).

    Returns:
        `(loss, aux, weight_gradients, probe_gradients)`; a tensor that does not
        influence the loss gets a zero gradient. `aux` is any structure of tensors.

    Raises:
        ValueError: On a Keras backend other than tensorflow, torch and jax.
    """
    backend = keras.config.backend()
    weight_values = list(weight_values)
    if backend == "tensorflow":
        import tensorflow as tf

        weights = [tf.convert_to_tensor(t) for t in weight_values]
        probes = []
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(weights)

            def make_probe(tensor):
                probe = tf.zeros_like(tensor)
                tape.watch(probe)
                probes.append(probe)
                return probe

            loss, aux = fn(weights, make_probe)
        grads = tape.gradient(
            loss, weights + probes, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return loss, aux, list(grads[: len(weights)]), list(grads[len(weights) :])
    if backend == "torch":
        import torch

        weights = [torch.as_tensor(t).detach().requires_grad_(True) for t in weight_values]
        probes = []

        def make_probe(tensor):
            probe = torch.zeros_like(tensor, requires_grad=True)
            probes.append(probe)
            return probe

        with torch.enable_grad():
            loss, aux = fn(weights, make_probe)
            args = weights + probes
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, args, allow_unused=True)
            else:
                grads = [None] * len(args)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(args, grads, strict=True)]
        aux = keras.tree.map_structure(
            lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux
        )
        return loss.detach(), aux, grads[: len(weights)], grads[len(weights) :]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        # JAX differentiates only with respect to arguments: learn the probes' shapes from
        # an abstract evaluation (no computation), then pass the probes in as arguments.
        shapes = []

        def record_probe(tensor):
            shapes.append((tensor.shape, tensor.dtype))
            return jnp.zeros(tensor.shape, tensor.dtype)

        jax.eval_shape(lambda w: fn(w, record_probe), weight_values)
        probes = [jnp.zeros(shape, dtype) for shape, dtype in shapes]

        def with_probes(weights, probe_args):
            supply = iter(probe_args)
            return fn(weights, lambda tensor: next(supply))

        (loss, aux), (weight_grads, probe_grads) = jax.value_and_grad(
            with_probes, argnums=(0, 1), has_aux=True
        )(weight_values, probes)
        return loss, aux, list(weight_grads), list(probe_grads)
    raise ValueError(
        f"xstable's diagnostics support the tensorflow, torch and jax backends. "
        f"Received: backend={backend!r}. Set KERAS_BACKEND to one of them."
    )

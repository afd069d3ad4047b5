"""One optimizer update computed on copies, so the caller's optimizer state never changes."""

import keras
from keras import ops

from xstable import backend

__all__ = []


def apply_update_without_side_effects(optimizer, weights, weight_values, grads):
    """Returns the weights one `optimizer` step would produce, leaving `optimizer` untouched.

    A fresh optimizer of the same class and config is built on copies of `weights`; when
    `optimizer` is already built with state of the same layout (moments, iteration count),
    that state is copied in, so the update is the one `fit` would apply next. Copies are
    real variables (not `stateless_apply`) because the TensorFlow backend has no
    `stateless_apply`.
    """
    if backend.OPTIMIZERS_HAVE_STATELESS_APPLY and getattr(optimizer, "built", False):
        # Cheapest exact path: the optimizer's own stateless update on copies of its state
        # (TensorFlow has no stateless_apply). Valid when it was built for these weights,
        # which is what compile()/fit() do.
        state = [ops.copy(ops.convert_to_tensor(v)) for v in optimizer.variables]
        try:
            new_weights, _ = optimizer.stateless_apply(
                state, list(grads), [ops.copy(v) for v in weight_values]
            )
            return list(new_weights)
        except ValueError:
            pass  # built for another variable list: fall back to a fresh copy below
    copies = [
        keras.Variable(
            ops.copy(value), dtype=weight.dtype, trainable=True, name=weight.name
        )
        for weight, value in zip(weights, weight_values, strict=True)
    ]
    clone = optimizer.__class__.from_config(optimizer.get_config())
    clone.build(copies)
    if getattr(optimizer, "built", False) and len(optimizer.variables) == len(clone.variables):
        pairs = list(zip(optimizer.variables, clone.variables, strict=True))
        if all(tuple(a.shape) == tuple(b.shape) for a, b in pairs):
            for source, target in pairs:
                target.assign(ops.copy(ops.convert_to_tensor(source)))
    clone.apply(list(grads), copies)
    return [ops.convert_to_tensor(v) for v in copies]

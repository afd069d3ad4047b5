"""Resets a counter variable to 0, eagerly or inside a traced step."""

from keras import ops

__all__ = ["reset_to_zero"]


def reset_to_zero(variable):
    """Assigns 0 to the counter `variable`, in its own shape and dtype.

    A new zero each time, never a cached one: Keras's JAX trainer donates the state arrays to
    each jitted step, which deletes them, and a TF reset traced in a `tf.function` must not
    keep a symbolic tensor.
    """
    variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

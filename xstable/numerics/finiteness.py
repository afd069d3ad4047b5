"""Finiteness checks that work on any backend, eagerly or inside compiled code."""

import keras
from keras import ops

__all__ = ["all_finite", "count_nonfinite"]


def count_nonfinite(x):
    """Counts the NaN and infinite elements of a tensor.

    Args:
        x: Tensor. Integer and boolean tensors are always finite (count 0).

    Returns:
        Scalar int32 tensor: the number of elements that are NaN, `+inf` or `-inf`. Usable
        inside `jit`/`tf.function`; call `int()` on it only in eager code.

    Example:

    >>> count_nonfinite(keras.ops.array([1.0, float("nan"), float("inf")]))  # 2
    """
    x = ops.convert_to_tensor(x)
    if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype)):
        return ops.convert_to_tensor(0, dtype="int32")
    return ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "int32"))


def all_finite(tensors):
    """Returns whether every element of every tensor in a nested structure is finite.

    Args:
        tensors: A tensor, or a (nested) list, tuple or dict of tensors (e.g. gradients).
            `None` entries (variables without gradient) are skipped.

    Returns:
        Scalar boolean tensor, `True` when no element is NaN or infinite (also for an empty
        structure). Usable inside compiled code, e.g. as the predicate of `keras.ops.cond`.

    Example:

    >>> all_finite([keras.ops.ones((2,)), keras.ops.array([float("inf")])])  # False
    """
    flat = [t for t in keras.tree.flatten(tensors) if t is not None]
    if not flat:
        return ops.convert_to_tensor(True)
    finite = [ops.all(ops.isfinite(ops.convert_to_tensor(t))) for t in flat]
    return ops.all(ops.stack(finite))

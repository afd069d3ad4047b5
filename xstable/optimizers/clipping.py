"""Gradient clipping transforms used by `GuardedOptimizer`, written with `keras.ops` only.

Each function takes a list of gradients (entries may be `None` for variables without a
gradient) and returns a new list of the same length; nothing is modified in place. Norms use
the "double where" of `keras.optimizers.Optimizer._clip_by_norm`: a zero norm is replaced by one
*before* the square root and selected back afterwards, so values and gradients stay finite at 0.
"""

import keras  # noqa: F401  (the doctest uses it)
from keras import ops

from xstable import backend
from xstable.backend._portable import safe_sqrt as _safe_sqrt

__all__ = [
    "global_norm",
    "clip_by_value",
    "clip_by_norm",
    "clip_by_global_norm",
    "adaptive_clip",
    "unitwise_norm",
]


def global_norm(grads):
    """Returns the L2 norm of all gradients taken together, as a float32 scalar.

    Args:
        grads: List of tensors (entries may be `None`, which are ignored).

    Returns:
        A float32 scalar tensor. It is NaN or inf when any gradient is non-finite, and inf
        when the sum of squares overflows float32 (gradients around 1e19 or larger).

    Example:

    >>> float(global_norm([keras.ops.ones((2,)), keras.ops.ones((2,))]))
    2.0
    """
    return backend.global_norm(grads)


def clip_by_value(grads, clipvalue):
    """Clips every gradient element to `[-clipvalue, clipvalue]`.

    NaN elements stay NaN (clipping does not hide non-finite gradients).

    Args:
        grads: List of tensors or `None`.
        clipvalue: Positive float.

    Returns:
        The list of clipped gradients.
    """
    return [None if g is None else ops.clip(g, -clipvalue, clipvalue) for g in grads]


def clip_by_norm(grads, clipnorm):
    """Rescales each gradient separately so its L2 norm is at most `clipnorm`.

    Formula: `g * clipnorm / max(||g||, clipnorm)`, the same as Keras's `clipnorm`.

    Args:
        grads: List of tensors or `None`.
        clipnorm: Positive float.

    Returns:
        The list of clipped gradients.
    """
    clipped = []
    for g in grads:
        if g is None:
            clipped.append(None)
            continue
        norm = _safe_sqrt(ops.sum(ops.square(g)))
        clipped.append(ops.divide(ops.multiply(g, clipnorm), ops.maximum(norm, clipnorm)))
    return clipped


def clip_by_global_norm(grads, clipnorm, norm=None):
    """Rescales all gradients together so that their global L2 norm is at most `clipnorm`.

    Formula: `g * clipnorm / max(global_norm, clipnorm)`.

    Args:
        grads: List of tensors or `None`.
        clipnorm: Positive float.
        norm: Optional precomputed `global_norm(grads)`, to avoid computing it twice.

    Returns:
        The list of clipped gradients. A non-finite global norm makes every gradient NaN, so
        a guard that checks finiteness sees it.
    """
    if norm is None:
        norm = global_norm(grads)
    scale = ops.divide(clipnorm, ops.maximum(norm, clipnorm))
    return backend.scale_all(grads, scale)


def unitwise_norm(x):
    """Returns the L2 norm of each output unit of `x`, broadcastable against `x`.

    The unit is what NFNets' adaptive gradient clipping uses: scalars and vectors (biases,
    scales) are one unit; for a kernel of rank >= 2 the last axis indexes the output units
    (Keras `Dense` kernels are `(in, out)`, `Conv2D` kernels `(h, w, in, out)`), so the norm
    is taken over all other axes.

    Args:
        x: Tensor.

    Returns:
        Tensor of the same rank as `x` (size-1 axes where reduced).
    """
    rank = len(x.shape)
    if rank <= 1:
        axes = None
    else:
        axes = tuple(range(rank - 1))
    return _safe_sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))


def adaptive_clip(grads, variables, clipping, eps=1e-3):
    """Adaptive gradient clipping (AGC, Brock et al. 2021, "NFNets"), unit-wise.

    Each output unit's gradient is rescaled so that `||g_unit|| / max(||w_unit||, eps)` is at
    most `clipping`; units under the limit are untouched.

    Formula: `max_norm = clipping * max(||w||, eps)`;
    `g <- g * max_norm / ||g||` where `||g|| > max_norm`, else `g`.

    Args:
        grads: List of tensors or `None`.
        variables: The variables (or their values) the gradients belong to, same order.
        clipping: Positive float, the largest allowed ratio of gradient to weight norm.
        eps: Positive float, the smallest weight norm considered, so that units initialised
            at zero can still move.

    Returns:
        The list of clipped gradients.
    """
    clipped = []
    for g, w in zip(grads, variables, strict=True):
        if g is None:
            clipped.append(None)
            continue
        w = ops.cast(w, g.dtype)
        max_norm = ops.multiply(ops.maximum(unitwise_norm(w), eps), clipping)
        grad_norm = unitwise_norm(g)
        # Dividing by a norm of at least `max_norm` (> 0) keeps zero gradients finite.
        scale = ops.divide(max_norm, ops.maximum(grad_norm, max_norm))
        clipped.append(ops.where(ops.greater(grad_norm, max_norm), ops.multiply(g, scale), g))
    return clipped

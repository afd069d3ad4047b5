"""TensorFlow-only: a softmax output, recomputed from its logits with plain graph ops.

With oneDNN (on by default in TF's x86 builds) a graph's `Softmax` op runs as `_MklSoftmax`,
whose fixed cost dwarfs the arithmetic on the small tensors a classifier's output holds. On this
project's 2-core CPU machine (2026-12-06 02:44 UTC, `benchmarks/probe_tf_softmax_cost.py`, a
`[512, 10]` float32 tensor, ops chained in one graph) the `Softmax` op took 42.6 us, the
plain-op softmax below 18.6 us and `exp` alone 5.0 us (13.8, 22.0 and 7.0 us with
`TF_ENABLE_ONEDNN_OPTS=0`, where the recomputation would cost more than the op it replaces; an
earlier run read 38.5 / 19.2 us with oneDNN and 25.4 / 23.3 us without). Keras's own TF
cross-entropies never run it in training: they find the logits behind the softmax and use a
fused kernel, so Grappler prunes the model's `Softmax` op. The safe cross-entropies must use the
probabilities themselves (the same value on every backend), so on TF they recompute them here
from the same logits, with JAX's formula (`exp(z - max) / sum`), and the model's `Softmax` op is
pruned in the same way when nothing else reads the model's output. The gradient is every
backend's softmax backward, `(g - sum(g * p)) * p`. In a training step
(`benchmarks/bench_losses.py --only cce,scce --against f0fb1bf --copies 3 --rounds 201
--block-seconds 0.05 --skip-saturation`, 02:24 UTC) this made the safe
categorical cross-entropy 0.980 [0.971-1.004] of its previous wall time (CPU 0.984
[0.975-0.991]) and the sparse one 0.993 [0.978-1.008] (CPU 0.990 [0.977-1.002]).

Only where it pays: on a TF that runs oneDNN kernels (x86, `TF_ENABLE_ONEDNN_OPTS` not set to
0) and sees no GPU. Without oneDNN TF's own `Softmax` kernel is cheaper than the recomputation
(above), and on a GPU it is one fused kernel against five; neither was measured in a step
here, so both keep the op.

A row with a `+inf` or NaN logit comes out NaN throughout, as from JAX's, torch's and TF's
own Eigen softmax (oneDNN's kernel leaves the row's other entries at 0); the loss of such a
row is NaN either way. Only a float32 `Softmax` op in a traced graph is recomputed (over its
last axis, the only one the op takes); anything else is returned as it was given.
"""

import os
import platform

import tensorflow as tf

__all__ = []

_ONEDNN_OFF = ("0", "false", "off", "no")


def recompute_pays():
    """True where the recomputation measured cheaper: oneDNN on (x86, not switched off), no GPU."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in _ONEDNN_OFF:
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return not tf.config.list_physical_devices("GPU")


@tf.custom_gradient
def _softmax(logits):
    shifted = logits - tf.reduce_max(logits, axis=-1, keepdims=True)
    unnormalized = tf.exp(shifted)
    probabilities = unnormalized / tf.reduce_sum(unnormalized, axis=-1, keepdims=True)

    def grad(upstream):
        along = tf.reduce_sum(upstream * probabilities, axis=-1, keepdims=True)
        return (upstream - along) * probabilities

    return probabilities, grad


def recomputed_softmax(y_pred, axis):
    """`y_pred`, or the same probabilities recomputed from the logits of its `Softmax` op.

    Args:
        y_pred: A tensor of probabilities.
        axis: The class axis the loss reduces over.
    """
    if not tf.is_symbolic_tensor(y_pred):  # eager: the softmax has run already
        return y_pred
    if not recompute_pays():
        return y_pred
    op = y_pred.op
    if op.type != "Softmax" or y_pred.dtype != tf.float32:
        return y_pred
    rank = y_pred.shape.rank
    if rank is None or axis not in (-1, rank - 1):
        return y_pred
    return _softmax(op.inputs[0])

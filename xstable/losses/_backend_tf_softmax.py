"""TensorFlow-only: a softmax output, recomputed from its logits with plain graph ops.

With oneDNN (on by default in TF's x86 builds) a graph's `Softmax` op runs as `_MklSoftmax`,
whose fixed cost dwarfs the arithmetic on the small tensors a classifier's output holds. On
this project's 2-core CPU machine (2026-12-06 02:40 UTC, `benchmarks/probe_tf_softmax_cost.py`,
a `[512, 10]` float32 tensor, ops chained in one graph) the `Softmax` op took 38.5 us, the
plain-op softmax below 19.2 us and `exp` alone 7.2 us (25.4, 23.3 and 8.3 us with
`TF_ENABLE_ONEDNN_OPTS=0`). Keras's own TF cross-entropies never run it in training: they find
the logits behind the softmax and use a fused kernel, so Grappler prunes the model's `Softmax`
op. The safe cross-entropies must use the probabilities themselves (the same value on every
backend), so on TF they recompute them here from the same logits, with JAX's formula
(`exp(z - max) / sum`), and the model's `Softmax` op is pruned in the same way when nothing
else reads the model's output. The gradient is every backend's softmax backward,
`(g - sum(g * p)) * p`. In a training step (`benchmarks/bench_losses.py --against f0fb1bf
--copies 3`, 02:24 UTC) this made the safe categorical cross-entropy 0.980 [0.971-1.004] of
its previous wall time (CPU 0.984 [0.975-0.991]) and the sparse one 0.993 [0.978-1.008]
(CPU 0.990 [0.977-1.002]).

A row with a `+inf` or NaN logit comes out NaN throughout, as from JAX's, torch's and TF's
own Eigen softmax (oneDNN's kernel leaves the row's other entries at 0); the loss of such a
row is NaN either way. Only a float32 `Softmax` op in a traced graph is recomputed (over its
last axis, the only one the op takes); anything else is returned as it was given.
"""

import tensorflow as tf

__all__ = []


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
    op = y_pred.op
    if op.type != "Softmax" or y_pred.dtype != tf.float32:
        return y_pred
    rank = y_pred.shape.rank
    if rank is None or axis not in (-1, rank - 1):
        return y_pred
    return _softmax(op.inputs[0])

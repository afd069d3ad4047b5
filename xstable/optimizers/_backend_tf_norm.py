"""TensorFlow-only: the sum of squares behind the global gradient norm, one kernel per gradient.

`keras.ops` spells a gradient's sum of squares as `sum(square(g))`. A TF graph runs that as two
kernels: `Square` writes a temporary as large as the gradient and `Sum` reads it back, a full
extra pass over every gradient in each step (nothing fuses them without XLA). `tf.nn.l2_loss`
computes `sum(g ** 2) / 2` in one pass, which makes a guarded step with global clipping a
little cheaper on CPU. Doubling the halved sum is exact (a power of two), so the result equals `sum(square(g))` bit
for bit where that is a normal number, and is
NaN or inf exactly where it is.
"""

import tensorflow as tf

__all__ = []


def sum_of_squares(grads):
    """The float32 sum of every gradient's squared entries (`None` entries ignored).

    Args:
        grads: List of tensors (dense or `tf.IndexedSlices`) or `None`.

    Returns:
        A float32 scalar tensor: 0 for no gradients, inf when it overflows, NaN for NaN.
    """
    halves = []
    for g in grads:
        if g is None:
            continue
        if isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)  # duplicate indices add up, as in the dense gradient
        if g.dtype != tf.float32:
            g = tf.cast(g, tf.float32)
        halves.append(tf.nn.l2_loss(g))
    if not halves:
        return tf.zeros((), dtype=tf.float32)
    return 2.0 * tf.add_n(halves)

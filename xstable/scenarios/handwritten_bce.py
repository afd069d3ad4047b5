"""Binary cross-entropy written the textbook way, with no clipping: the loss many users write.

Keras 3's built-in `binary_crossentropy` cannot take the log of 0 (torch and JAX clip the
probability to [1e-7, 1 - 1e-7], TensorFlow recovers the sigmoid's logits), so the seed
documents' "log of 0" failures do not happen with it. The stress variants use this function to
show the failure the documents describe, and the xstable fixes replace it.
"""

from keras import ops

__all__ = ["handwritten_binary_crossentropy"]


def handwritten_binary_crossentropy(y_true, y_pred):
    """Mean binary cross-entropy of probabilities, `-mean(y log p + (1 - y) log(1 - p))`.

    Unsafe on purpose: a probability that rounds to exactly 0 or 1 gives an infinite loss and
    NaN gradients.

    Args:
        y_true: tensor of targets in [0, 1].
        y_pred: tensor of probabilities, broadcastable to `y_true` after reshaping.

    Returns:
        Scalar tensor.

    Formula:

    ```
    loss = -mean(y_true * log(y_pred) + (1 - y_true) * log(1 - y_pred))
    ```
    """
    y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
    return -ops.mean(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))

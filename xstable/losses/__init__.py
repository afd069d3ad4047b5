"""Safe losses: finite values and gradients, the same on TensorFlow, PyTorch and JAX.

On healthy data each loss returns its Keras twin's values, and `fit`, `evaluate` and History
return what they return with the Keras loss. Each loss owns counters (`loss.counters`) for the
events it handled (invalid targets, non-finite samples): list them as metrics to see them,
`model.compile(loss=loss, metrics=loss.counters)`.
"""

from xstable.losses.logits_model import to_logits_model
from xstable.losses.loss_event_count import LossEventCount
from xstable.losses.safe_binary_crossentropy import (
    SafeBinaryCrossentropy,
    safe_binary_crossentropy,
)
from xstable.losses.safe_categorical_crossentropy import (
    SafeCategoricalCrossentropy,
    safe_categorical_crossentropy,
)
from xstable.losses.safe_loss import SafeLoss
from xstable.losses.safe_sparse_categorical_crossentropy import (
    SafeSparseCategoricalCrossentropy,
    safe_sparse_categorical_crossentropy,
)

__all__ = [
    "LossEventCount",
    "SafeBinaryCrossentropy",
    "SafeCategoricalCrossentropy",
    "SafeLoss",
    "SafeSparseCategoricalCrossentropy",
    "safe_binary_crossentropy",
    "safe_categorical_crossentropy",
    "safe_sparse_categorical_crossentropy",
    "to_logits_model",
]

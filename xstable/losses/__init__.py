"""Safe losses: finite values and gradients, the same on TensorFlow, PyTorch and JAX.

Each loss owns counters (`loss.metrics`) for the events it handled (invalid targets,
non-finite samples); they show in the `fit` logs and History of the model compiling the loss.
"""

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
]

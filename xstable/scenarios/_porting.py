"""What every port of a seed-document example changes, and the small helpers the ports share."""

import numpy as np

DATA_SEED = 0
WEIGHT_SEED = 0

# The changes every port makes, each with why. Scenario variants add their own.
KERAS3 = "`tensorflow.keras`/`tf.keras` -> `keras` (Keras 3, so the same code runs on any backend)"
INPUT = (
    "`input_shape=` on the first layer -> `keras.Input(shape)` first (Keras 3 warns on "
    "`input_shape` in a layer; the weights must exist before training to be shared across "
    "backends)"
)
SEEDED_DATA = (
    "unseeded `np.random` -> `np.random.default_rng(0)` with the same distributions (identical "
    "data on every backend)"
)
STANDARD_SCALER = (
    "`StandardScaler().fit_transform` -> `standard_scale` (the same formula in NumPy; checked "
    "against scikit-learn in the tests)"
)
FLOAT32 = "data cast to float32 (what Keras feeds the model anyway; identical tensors everywhere)"


def pinned_fit(epochs, batch_size=32):
    """The change from `model.fit(...)` to `run_spec`, worded for the variant's epochs."""
    return (
        f"`model.fit(X, y, epochs={epochs})` -> `run_spec`: {epochs} epochs, batch {batch_size} "
        "(fit's default), one `train_on_batch` per step in a NumPy-pinned shuffled order "
        "(fit shuffles differently on each backend)"
    )


TRY_EXCEPT = (
    "the `try/except` around `fit` is dropped (Keras 3 raises no error on a NaN loss; "
    "`run_spec` records the first non-finite step instead)"
)
FRESH_MODEL_FOR_FIX = (
    "the document trains its fix on the model already trained by the failing code; we "
    "train a fresh model from the same initial weights, so the fix is measured alone"
)


def rng():
    """A fresh NumPy generator with the scenarios' data seed."""
    return np.random.default_rng(DATA_SEED)


def float32(*arrays):
    """Casts every array to float32 (one tuple out, in order)."""
    return tuple(np.asarray(a, dtype="float32") for a in arrays)


def stress_sgd(learning_rate):
    """The change made by an SGD stress variant, worded for its learning rate."""
    return (
        f"ours, not the document's: optimizer -> `SGD(learning_rate={learning_rate})`, the "
        "smallest of 0.01, 0.1, 1, 10 that made this code non-finite when we searched "
        "(the document's code stays finite on Keras 3)"
    )


STRESS_HANDWRITTEN_BCE = (
    "ours, not the document's: `binary_crossentropy` -> `handwritten_binary_crossentropy` "
    "(log of the raw probability, no clipping; Keras 3's built-in BCE clips or uses logits "
    "and cannot take log(0))"
)


def stress_adam(learning_rate):
    """The change made by an Adam-rate stress variant."""
    return (
        f"ours: Adam's learning rate -> {learning_rate}, the smallest of 0.01, 0.1, 1 that "
        "saturated the sigmoid to exactly 0 or 1 in float32 when we searched"
    )

"""Batch order fixed by NumPy, so every backend sees the same rows in the same steps."""

import numpy as np

__all__ = ["batch_order"]


def batch_order(num_rows, batch_size, epochs, shuffle=True, seed=0):
    """Returns the row indices of every training step, epoch by epoch.

    Keras shuffles differently on each backend even under one seed, so cross-backend runs
    take their order from here instead.

    Args:
        num_rows: int, rows in the data set.
        batch_size: int, rows per step; the last step of an epoch may be smaller.
        epochs: int, number of passes.
        shuffle: bool, permute the rows anew each epoch.
        seed: int, seed of the NumPy generator that draws the permutations.

    Returns:
        A list with one list per epoch, each holding one int64 index array per step.

    Example:

    >>> [len(steps) for steps in batch_order(10, 4, epochs=2)]
    [3, 3]
    """
    if num_rows < 1:
        raise ValueError(f"`num_rows` must be at least 1. Received: num_rows={num_rows}.")
    rng = np.random.default_rng(seed)
    order = []
    for _ in range(epochs):
        rows = rng.permutation(num_rows) if shuffle else np.arange(num_rows)
        order.append([rows[i : i + batch_size] for i in range(0, num_rows, batch_size)])
    return order

"""When a finite run counts as `"diverged"`: 100 times the loss of the best constant prediction.

A model whose training loss ends more than `DIVERGED_FACTOR` times above the loss of always
predicting the same value (the target mean) has learned nothing usable, whatever the scale of
the data. The threshold is computed from the training targets, so it is the same on every
backend and every variant of a scenario.
"""

import numpy as np

__all__ = [
    "DIVERGED_FACTOR",
    "constant_prediction_mse",
    "constant_prediction_bce",
    "diverged_threshold",
]

DIVERGED_FACTOR = 100.0


def constant_prediction_mse(y):
    """Mean squared error of always predicting `mean(y)`, i.e. the variance of `y`.

    Args:
        y: array of targets.

    Returns:
        float, `var(y)` (population variance).
    """
    return float(np.var(np.asarray(y, dtype=np.float64)))


def constant_prediction_bce(y):
    """Binary cross-entropy of always predicting the probability `mean(y)`.

    Args:
        y: array of targets in [0, 1] (hard or soft labels).

    Returns:
        float, `-mean(y log m + (1 - y) log(1 - m))` with `m = mean(y)`.

    Raises:
        ValueError: If a target lies outside [0, 1].
    """
    y = np.asarray(y, dtype=np.float64)
    if np.any((y < 0.0) | (y > 1.0)):
        raise ValueError(
            f"Binary targets must lie in [0, 1]. Received: y in [{y.min()}, {y.max()}]."
        )
    m = float(np.clip(y.mean(), 1e-12, 1.0 - 1e-12))
    return float(-np.mean(y * np.log(m) + (1.0 - y) * np.log(1.0 - m)))


def diverged_threshold(baseline_loss):
    """Returns `DIVERGED_FACTOR * baseline_loss`, the `"diverged"` threshold of a scenario.

    Args:
        baseline_loss: float, loss of the best constant prediction (see the functions above).

    Returns:
        float threshold.

    Raises:
        ValueError: If `baseline_loss` is not a positive finite number.

    Example:

    >>> diverged_threshold(constant_prediction_mse([10.0, 20.0, 30.0]))  # doctest: +ELLIPSIS
    6666.66...
    """
    if not np.isfinite(baseline_loss) or baseline_loss <= 0:
        raise ValueError(
            "`baseline_loss` must be a positive finite number. "
            f"Received: baseline_loss={baseline_loss!r}."
        )
    return DIVERGED_FACTOR * float(baseline_loss)

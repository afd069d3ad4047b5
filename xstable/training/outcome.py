"""Did the model learn? The outcome of a training run, judged against the trivial predictor.

A run that stays finite has not necessarily learned anything: a model whose final loss is no
better than always predicting the target mean (regression) or the label prior
(classification) is stuck, whatever the absolute value of its loss. `trivial_loss` computes
that reference with the run's own loss, and `classify_outcome` says which of four outcomes a
run had:

- `"ok"`: finite, final loss below the trivial loss (the model learned something).
- `"stalled"`: finite, final loss at or above the trivial loss, but not far above it.
- `"exploded"`: finite, final loss more than `EXPLODED_FACTOR` times the trivial loss.
- `"nan"`: a loss or a weight went non-finite.
"""

import math

import keras
import numpy as np

__all__ = ["OUTCOMES", "EXPLODED_FACTOR", "classify_outcome", "trivial_loss"]

OUTCOMES = ("ok", "stalled", "exploded", "nan")
EXPLODED_FACTOR = 100.0
# Probabilities of the trivial predictor are kept this far from 0 and 1, so its logits exist.
_PROBABILITY_MARGIN = 1e-7


def classify_outcome(final_loss, trivial_loss, *, finite=True, exploded_factor=EXPLODED_FACTOR):
    """Returns `"ok"`, `"stalled"`, `"exploded"` or `"nan"` for a training run.

    Args:
        final_loss: float, the loss after training (on the training data).
        trivial_loss: float or `None`, the loss of the trivial predictor on the same data and
            loss (see `trivial_loss`). `None`: unknown, so a finite run counts as `"ok"`.
        finite: bool, whether every loss and weight of the run stayed finite.
        exploded_factor: float > 1, a finite final loss above `exploded_factor *
            trivial_loss` is `"exploded"`.

    Returns:
        str, one of `OUTCOMES`.

    Raises:
        ValueError: If `exploded_factor` is not above 1, or `trivial_loss` is negative or
            non-finite.

    Example:

    >>> [classify_outcome(loss, 0.69) for loss in (0.4, 0.7, 130.0, float("nan"))]
    ['ok', 'stalled', 'exploded', 'nan']
    """
    if not exploded_factor > 1.0:
        raise ValueError(
            f"`exploded_factor` must be above 1. Received: exploded_factor={exploded_factor!r}."
        )
    if trivial_loss is not None and not (math.isfinite(trivial_loss) and trivial_loss >= 0.0):
        raise ValueError(
            "`trivial_loss` must be a finite number >= 0, or None when unknown. "
            f"Received: trivial_loss={trivial_loss!r}."
        )
    if not finite or not math.isfinite(final_loss):
        return "nan"
    if trivial_loss is None or final_loss < trivial_loss:
        return "ok"
    if final_loss > exploded_factor * trivial_loss:
        return "exploded"
    return "stalled"


def _loss_name(loss):
    if isinstance(loss, keras.losses.Loss):
        inner = getattr(loss, "fn", None)
        return getattr(inner, "__name__", "") or type(loss).__name__
    return getattr(loss, "__name__", type(loss).__name__)


def _from_logits(loss):
    if getattr(loss, "from_logits", False):
        return True
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    return bool(config.get("from_logits", False)) if isinstance(config, dict) else False


def _is_sparse(loss):
    name = _loss_name(loss).lower()
    return "sparse" in name and "categorical" in name


def _is_categorical(loss):
    name = _loss_name(loss).lower()
    return "categorical" in name and "sparse" not in name


def trivial_loss(loss, y, num_classes=None):
    """Loss of the trivial predictor: every row predicts the target mean (label prior).

    The prediction is the column mean of `y`: the target mean for regression, the label
    frequencies for binary or one-hot targets (their probabilities, or logits when the loss
    has `from_logits=True`); for a sparse categorical loss, the class frequencies of the
    integer labels. The loss itself is evaluated as given, so the reference has the units of
    the run's loss (a custom loss included).

    Args:
        loss: a Keras loss name (`"mse"`, `"binary_crossentropy"`...), a `keras.losses.Loss`
            or a callable `(y_true, y_pred) -> loss`.
        y: array of training targets.
        num_classes: int, number of classes of a sparse categorical loss (default: the
            largest label + 1).

    Returns:
        float, the mean loss of the trivial predictor over the rows of `y`.

    Raises:
        ValueError: If `y` is empty or not finite.

    Example:

    >>> round(trivial_loss("mse", [[10.0], [20.0], [30.0]]), 2)
    66.67
    """
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    y = np.asarray(y)
    if y.size == 0 or not np.isfinite(y).all():
        raise ValueError(
            "`y` must be a non-empty array of finite targets. "
            f"Received: y with shape {y.shape} and {int((~np.isfinite(y)).sum())} non-finite values."
        )
    from_logits = _from_logits(loss)
    if _is_sparse(loss):
        labels = y.astype("int64").reshape(-1)
        classes = int(num_classes or labels.max() + 1)
        prior = np.bincount(labels, minlength=classes) / labels.size
        prior = np.clip(prior, _PROBABILITY_MARGIN, 1.0)
        row = np.log(prior) if from_logits else prior
        prediction = np.tile(row, (labels.size, 1))
    else:
        y = y.astype("float64")
        mean = y.reshape(y.shape[0], -1).mean(axis=0).reshape((1, *y.shape[1:]))
        prediction = np.broadcast_to(mean, y.shape)
        if from_logits:
            p = np.clip(prediction, _PROBABILITY_MARGIN, 1.0 - _PROBABILITY_MARGIN)
            prediction = np.log(p) if _is_categorical(loss) else np.log(p / (1.0 - p))
    value = loss(
        keras.ops.convert_to_tensor(y.astype("float32") if y.dtype.kind == "f" else y),
        keras.ops.convert_to_tensor(np.asarray(prediction, dtype="float32")),
    )
    return float(np.mean(keras.ops.convert_to_numpy(value)))

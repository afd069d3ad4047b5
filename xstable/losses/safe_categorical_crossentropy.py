"""`SafeCategoricalCrossentropy`: categorical cross-entropy identical on every backend."""

import keras
from keras import ops

from xstable.losses import _arguments, _crossentropy_kernels, _log_probabilities
from xstable.losses._safe_crossentropy_base import (
    SafeCrossentropyBase,
    TargetCheck,
    invalid_unit_interval_samples,
    resolve_invalid,
)
from xstable.numerics import _limits

__all__ = ["SafeCategoricalCrossentropy", "safe_categorical_crossentropy"]


def categorical_terms(target, log_p, axis):
    """`-sum(target * log_p)` where 0 targets contribute exactly 0, capped at the float max."""
    used = ops.greater(target, 0)
    # Select before multiplying: 0 * -inf would be NaN where logits overflow.
    log_p = ops.where(used, log_p, ops.zeros_like(log_p))
    values = -ops.sum(target * log_p, axis=axis)
    largest = _limits.max_value(values.dtype)
    return ops.where(ops.less(values, largest), values, ops.full_like(values, largest))


def _categorical_parts(y_true, y_pred, from_logits, label_smoothing, axis, check):
    """Per-sample losses and the invalid mask (values 0 there; `None` when `check` found every
    target valid eagerly)."""
    y_pred = ops.convert_to_tensor(y_pred)
    if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(y_pred.dtype)):
        y_pred = ops.cast(y_pred, keras.backend.floatx())
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    invalid = invalid_unit_interval_samples(y_true, axis, check)
    if invalid is None:
        target = y_true
    else:
        target = ops.where(ops.expand_dims(invalid, axis), 0.0, y_true)
    if label_smoothing:
        num_classes = ops.cast(ops.shape(y_true)[axis], y_pred.dtype)
        target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
    if from_logits:
        log_p = _log_probabilities.categorical_log_probabilities(y_pred, from_logits, axis)
        values = categorical_terms(target, log_p, axis)
    else:
        values = _crossentropy_kernels.categorical_crossentropy_from_probabilities(
            target, y_pred, axis
        )
    if invalid is not None and label_smoothing:
        # Without smoothing an invalid sample's target is all 0 here, so its value already
        # is exactly 0; smoothing gives it `s / num_classes` targets and a nonzero value.
        values = ops.where(invalid, 0.0, values)
    return values, invalid


def safe_categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Categorical cross-entropy with the same value and nonzero gradient on every backend.

    Function form of `SafeCategoricalCrossentropy` (see there for the formula). A sample with
    a target outside [0, 1] or NaN has a NaN loss, in eager and compiled code alike.

    Args:
        y_true: Tensor of one-hot or soft targets, shape `(batch, ..., num_classes)`.
        y_pred: Tensor of probabilities (or logits with `from_logits=True`), same shape.
        from_logits: Bool. Whether `y_pred` holds logits.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + s / num_classes`.
        axis: Int. The class axis. Defaults to `-1`.

    Returns:
        Per-sample losses, shape `(batch, ...)`.

    Raises:
        TypeError: if `from_logits` is not a bool, `label_smoothing` not a number or `axis`
            not an int.
        ValueError: if `label_smoothing` is outside [0, 1].

    Example:

    >>> safe_categorical_crossentropy([[0.0, 1.0]], [[1.0, 0.0]])  # [16.12], Keras's value
    """
    from_logits = _arguments.check_bool("from_logits", from_logits)
    label_smoothing = _arguments.check_label_smoothing(label_smoothing)
    axis = _arguments.check_int("axis", axis)
    y_pred = ops.convert_to_tensor(y_pred)
    check = TargetCheck(y_pred)
    values, invalid = _categorical_parts(y_true, y_pred, from_logits, label_smoothing, axis, check)
    values, _, _ = resolve_invalid(values, invalid, values, None, "nan")
    return values


@keras.saving.register_keras_serializable(package="xstable")
class SafeCategoricalCrossentropy(SafeCrossentropyBase):
    """Categorical cross-entropy: Keras's values and contracts, one behaviour on every backend.

    A drop-in for `keras.losses.CategoricalCrossentropy`: on healthy data it returns Keras's
    values (reduction, sample weights, label smoothing, `axis`, `from_logits`, dtype), and
    `fit`/`evaluate`/History return what they return with the Keras loss. Identical on
    TensorFlow, PyTorch and JAX, eager and compiled:

    - Probabilities are normalized to sum to 1 and clipped to `[epsilon, 1 - epsilon]` as
      Keras does, in value only: the gradient past the clip is not zero.
    - `from_logits=True` uses a stable log-softmax: exact value and gradient
      `softmax(z) - y`. Keras on TF recovers the logits behind a softmax output by itself;
      torch and JAX cannot. Give the loss logits: a linear last layer with
      `from_logits=True`, or `xstable.losses.to_logits_model`.
    - A sample with a target outside [0, 1] or NaN is left out of the mean and counted in
      `invalid_target_counter` (`invalid_targets="mask"`, default; a batch whose targets
      are all invalid has loss 0.0), or has a NaN loss (`invalid_targets="nan"`).

    List the counter to see it in logs and History:
    `model.compile(loss=loss, metrics=loss.counters)`.

    Formula:

    ```python
    p = clip(y_pred, 0, 1); p = p / sum(p, axis)   # as Keras normalizes
    loss = -sum(y * log(clip(p, epsilon, 1 - epsilon)), axis)   # clip in value only
    # from_logits=True: loss = -sum(y * log_softmax(y_pred), axis), shift held constant
    ```

    Args:
        from_logits: Bool. Whether `y_pred` holds logits.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + s / num_classes`.
        axis: Int. The class axis. Defaults to `-1`.
        invalid_targets: `"mask"` (default) or `"nan"` (see above).
        reduction: As in Keras. Defaults to `"sum_over_batch_size"`.
        name: String. Defaults to `"safe_categorical_crossentropy"`.
        dtype: Dtype of the loss computation. Defaults to `keras.backend.floatx()`.

    Raises:
        ValueError: for a `label_smoothing` outside [0, 1], a bad `reduction` or
            `invalid_targets`.
        TypeError: for a non-bool `from_logits`, a non-numeric `label_smoothing`, a non-int
            `axis` or a non-string `name`.

    Example:

    ```python
    loss = xstable.losses.SafeCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, metrics=loss.counters)
    ```
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        invalid_targets="mask",
        reduction="sum_over_batch_size",
        name="safe_categorical_crossentropy",
        dtype=None,
    ):
        from_logits = _arguments.check_bool("from_logits", from_logits)
        label_smoothing = _arguments.check_label_smoothing(label_smoothing)
        axis = _arguments.check_int("axis", axis)
        super().__init__(
            name=name, reduction=reduction, dtype=dtype, invalid_targets=invalid_targets
        )
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def per_sample(self, y_true, y_pred, check):
        return (
            *_categorical_parts(
                y_true, y_pred, self.from_logits, self.label_smoothing, self.axis, check
            ),
            None,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "axis": self.axis,
            }
        )
        return config

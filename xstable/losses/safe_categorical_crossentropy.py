"""`SafeCategoricalCrossentropy`: categorical cross-entropy identical on every backend."""

import keras
from keras import ops

from xstable.losses import _crossentropy_kernels, _log_probabilities
from xstable.losses._safe_crossentropy_base import (
    SafeCrossentropyBase,
    TargetCheck,
    invalid_unit_interval_samples,
    resolve_invalid,
    unit_interval_error,
)
from xstable.losses.safe_binary_crossentropy import _check_axis, _check_label_smoothing
from xstable.numerics import _limits

__all__ = ["SafeCategoricalCrossentropy", "safe_categorical_crossentropy"]

_FIX = (
    "Targets are one-hot or soft class probabilities: use "
    "SafeSparseCategoricalCrossentropy for integer labels, and replace NaN targets."
)


def categorical_terms(target, log_p, axis):
    """`-sum(target * log_p)` where 0 targets contribute exactly 0, capped at the float max."""
    used = ops.greater(target, 0)
    # Select before multiplying: 0 * -inf would be NaN where logits overflow.
    log_p = ops.where(used, log_p, ops.zeros_like(log_p))
    values = -ops.sum(target * log_p, axis=axis)
    largest = _limits.max_value(values.dtype)
    return ops.where(ops.less(values, largest), values, ops.full_like(values, largest))


def _categorical_parts(y_true, y_pred, from_logits, label_smoothing, axis, check):
    """Per-sample losses and the invalid mask (values 0 there; `None` if checked eagerly)."""
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


def _invalid_error(y_true, count):
    del count  # the message counts values (`unit_interval_error`), not samples
    return unit_interval_error(y_true, "class probabilities in [0, 1]", _FIX)


def safe_categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Categorical cross-entropy with the same value and nonzero gradient on every backend.

    Function form of `SafeCategoricalCrossentropy` (see there for the formula). A sample with
    a target outside [0, 1] or NaN raises in eager code and is NaN in compiled code.

    Args:
        y_true: Tensor of one-hot or soft targets, shape `(batch, ..., num_classes)`.
        y_pred: Tensor of probabilities (or logits with `from_logits=True`), same shape.
        from_logits: Bool. Whether `y_pred` holds logits.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + s / num_classes`.
        axis: Int. The class axis. Defaults to `-1`.

    Returns:
        Per-sample losses, shape `(batch, ...)`.

    Raises:
        ValueError: in eager code, for targets outside [0, 1] or NaN.

    Example:

    >>> safe_categorical_crossentropy([[0.0, 1.0]], [[1.0, 0.0]])  # [87.34], finite
    """
    _check_label_smoothing(label_smoothing)
    _check_axis(axis)
    y_pred = ops.convert_to_tensor(y_pred)
    check = TargetCheck(y_pred, lambda count: _invalid_error(y_true, count))
    values, invalid = _categorical_parts(
        y_true, y_pred, from_logits, label_smoothing, axis, check
    )
    values, _, _ = resolve_invalid(values, invalid, values, None)
    return values


@keras.saving.register_keras_serializable(package="xstable")
class SafeCategoricalCrossentropy(SafeCrossentropyBase):
    """Categorical cross-entropy with the same value and nonzero gradient on every backend.

    Keras's TF backend recovers the logits behind a softmax output, while torch and JAX clip
    the probabilities to `[1e-7, 1 - 1e-7]` (zero gradient past the clip). This loss applies
    one formula to the tensor it is given, on every backend:

    Formula:

    ```python
    p = clip(y_pred, 0, 1); p = p / sum(p, axis)   # clip in value only, as Keras normalizes
    loss = -sum(y * log(max(p, tiny)), axis)       # tiny = 1.18e-38 in float32
    # from_logits=True: loss = -sum(y * log_softmax(y_pred), axis), shift held constant
    ```

    The floor acts on the value only; the gradient is `1 / max(p, tiny)`, so through a
    softmax the gradient is the exact `p - y` wherever the true-class probability is not
    exactly 0 in floating point (logit gap below ~87 in float32). Zero targets contribute
    exactly 0, and a loss that would overflow is capped at the largest float.

    Targets outside [0, 1] or NaN: `ValueError` in eager code; in compiled code the sample is
    left out of the mean and counted in `invalid_target_counter` (in `fit` logs by itself),
    or made NaN where the counter cannot record (JAX, the loss called outside a model).

    Args:
        from_logits: Bool. Whether `y_pred` holds logits.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + s / num_classes`.
        axis: Int. The class axis. Defaults to `-1`.
        reduction: As in Keras. Defaults to `"sum_over_batch_size"`.
        name: String. Defaults to `"safe_categorical_crossentropy"`.
        dtype: Dtype of the loss computation. Defaults to `keras.backend.floatx()`.

    Raises:
        ValueError: for a bad `label_smoothing` or `reduction`; in eager code for bad targets.
        TypeError: for a non-numeric `label_smoothing` or a non-int `axis`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=xstable.losses.SafeCategoricalCrossentropy())
    ```
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="safe_categorical_crossentropy",
        dtype=None,
    ):
        _check_label_smoothing(label_smoothing)
        _check_axis(axis)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
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

    def invalid_error(self, y_true, y_pred, count):
        return _invalid_error(y_true, count)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "axis": self.axis,
                "dtype": self.dtype,
            }
        )
        return config

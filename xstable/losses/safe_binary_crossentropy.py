"""`SafeBinaryCrossentropy`: binary cross-entropy identical on every backend, never NaN."""

import keras
from keras import ops

from xstable.losses import _arguments, _crossentropy_kernels, _log_probabilities
from xstable.losses._safe_crossentropy_base import (
    SafeCrossentropyBase,
    TargetCheck,
    invalid_unit_interval_samples,
    resolve_invalid,
)

__all__ = ["SafeBinaryCrossentropy", "safe_binary_crossentropy"]


def _binary_parts(y_true, y_pred, from_logits, label_smoothing, axis, check):
    """Per-sample losses and the per-sample invalid mask (values 0 there), or `None` for the
    mask when `check` found every target valid eagerly."""
    y_pred = ops.convert_to_tensor(y_pred)
    if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(y_pred.dtype)):
        y_pred = ops.cast(y_pred, keras.backend.floatx())
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    elif len(y_pred.shape) == len(y_true.shape) - 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    invalid = invalid_unit_interval_samples(y_true, axis, check)
    if invalid is None:
        target = y_true
    else:
        # Replace invalid targets before the arithmetic so they cannot reach the gradient.
        target = ops.where(ops.expand_dims(invalid, axis), ops.zeros_like(y_true), y_true)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        log_p, log_not_p = _log_probabilities.binary_log_probabilities(y_pred)
        elementwise = -(target * log_p + (1.0 - target) * log_not_p)
        # Mean as a sum of scaled terms: finite even when each term is near the float max.
        size = ops.cast(ops.shape(elementwise)[axis], elementwise.dtype)
        values = ops.sum(elementwise / size, axis=axis)
    else:
        values = _crossentropy_kernels.binary_crossentropy_from_probabilities(target, y_pred, axis)
    if invalid is not None:
        values = ops.where(invalid, ops.zeros_like(values), values)
    return values, invalid


def safe_binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy with Keras's values, never NaN for valid inputs, on every backend.

    Function form of `SafeBinaryCrossentropy` (see there for the formula). Samples with a
    target outside [0, 1] or NaN have a NaN loss, in eager and compiled code alike (the
    function has no counter; the class leaves them out of the mean and counts them).

    Args:
        y_true: Tensor of targets in [0, 1], shape `(batch, ..., d)`.
        y_pred: Tensor of probabilities (or logits with `from_logits=True`), same shape.
        from_logits: Bool. Whether `y_pred` holds logits.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + 0.5 * s`.
        axis: Int. The axis averaged over. Defaults to `-1`.

    Returns:
        Per-sample losses, shape `(batch, ...)`.

    Raises:
        TypeError: if `from_logits` is not a bool, `label_smoothing` not a number or `axis`
            not an int.
        ValueError: if `label_smoothing` is outside [0, 1].

    Example:

    >>> safe_binary_crossentropy([[0.0, 1.0]], [[1.0, 1.0]])  # [7.97], Keras's value
    """
    from_logits = _arguments.check_bool("from_logits", from_logits)
    label_smoothing = _arguments.check_label_smoothing(label_smoothing)
    axis = _arguments.check_int("axis", axis)
    y_pred = ops.convert_to_tensor(y_pred)
    check = TargetCheck(y_pred)
    values, invalid = _binary_parts(y_true, y_pred, from_logits, label_smoothing, axis, check)
    values, _, _ = resolve_invalid(values, invalid, values, None, "nan")
    return values


@keras.saving.register_keras_serializable(package="xstable")
class SafeBinaryCrossentropy(SafeCrossentropyBase):
    """Binary cross-entropy: Keras's values and contracts, one behaviour on every backend.

    A drop-in for `keras.losses.BinaryCrossentropy`: on healthy data it returns Keras's
    values (reduction, sample weights, label smoothing, `axis`, `from_logits`, dtype as
    Keras documents them), and `fit`/`evaluate`/History return what they return with the
    Keras loss. What it adds, identical on TensorFlow, PyTorch and JAX, eager and compiled:

    - Probabilities are clipped to `[epsilon, 1 - epsilon]` as Keras does on JAX and torch
      (`keras.config.epsilon()`), in value only: the gradient past the clip is not zero.
    - `from_logits=True` uses the stable log-sigmoid: exact value and gradient
      `sigmoid(z) - y` for any logit. Keras on TF recovers the logits behind a sigmoid
      output by itself; torch and JAX cannot, so a saturated sigmoid output (a confidently
      wrong model) has a capped loss and a vanishing gradient there. Give the loss logits:
      a linear last layer with `from_logits=True`, or `xstable.losses.to_logits_model`.
    - Targets outside [0, 1] or NaN never reach the arithmetic. With
      `invalid_targets="mask"` (default) those samples are left out of the mean (zero
      gradient) and counted in `invalid_target_counter`; a batch whose targets are all
      invalid has loss 0.0. With `invalid_targets="nan"` their loss is NaN, so the batch
      loss is NaN (caught by `keras.callbacks.TerminateOnNaN`).

    The counter is a metric you list, as any Keras metric, to see it in logs and History:
    `model.compile(loss=loss, metrics=loss.counters)`. Not listed, nothing reports it.

    Formula:

    ```python
    p = clip(y_pred, epsilon, 1 - epsilon)         # value only; gradient passes through
    loss = mean(-(y * log(p) + (1 - y) * log(1 - p)), axis=axis)
    # from_logits=True: loss = mean(-(y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z)))
    ```

    Args:
        from_logits: Bool. Whether `y_pred` holds logits rather than probabilities.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + 0.5 * s`.
        axis: Int. The axis averaged over. Defaults to `-1`.
        invalid_targets: `"mask"` (default) or `"nan"`: what a sample with a target
            outside [0, 1] or NaN becomes (see above).
        reduction: As in Keras: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`.
        name: String. Defaults to `"safe_binary_crossentropy"`.
        dtype: Dtype of the loss computation. Defaults to `keras.backend.floatx()`.

    Raises:
        ValueError: for a `label_smoothing` outside [0, 1], a bad `reduction` or
            `invalid_targets`.
        TypeError: for a non-bool `from_logits`, a non-numeric `label_smoothing`, a non-int
            `axis` or a non-string `name`.

    Example:

    ```python
    loss = xstable.losses.SafeBinaryCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, metrics=loss.counters)
    history = model.fit(x, y)
    history.history["safe_binary_crossentropy_invalid_targets"]   # per-epoch counts
    ```
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        invalid_targets="mask",
        reduction="sum_over_batch_size",
        name="safe_binary_crossentropy",
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
            *_binary_parts(
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

"""`SafeBinaryCrossentropy`: binary cross-entropy identical on every backend, never NaN."""

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

__all__ = ["SafeBinaryCrossentropy", "safe_binary_crossentropy"]

_FIX = (
    "Targets are probabilities of the positive class: map {-1, 1} labels with (y + 1) / 2, "
    "and replace or drop NaN labels before training."
)


def _check_label_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise TypeError(
            "`label_smoothing` must be a float in [0, 1]. "
            f"Received: label_smoothing={label_smoothing!r} of type "
            f"{type(label_smoothing).__name__}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            "`label_smoothing` must be in [0, 1] (0 disables smoothing). "
            f"Received: label_smoothing={label_smoothing}"
        )


def _check_axis(axis):
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"`axis` must be an int. Received: axis={axis!r}")


def _binary_parts(y_true, y_pred, from_logits, label_smoothing, axis, check):
    """Per-sample losses and the per-sample invalid mask (values 0 there), or `None` for the
    mask when `check(invalid)` says the targets were checked eagerly."""
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
        log_p, log_not_p = _log_probabilities.binary_log_probabilities(y_pred, from_logits)
        elementwise = -(target * log_p + (1.0 - target) * log_not_p)
        # Mean as a sum of scaled terms: finite even when each term is near the float max.
        size = ops.cast(ops.shape(elementwise)[axis], elementwise.dtype)
        values = ops.sum(elementwise / size, axis=axis)
    else:
        values = _crossentropy_kernels.binary_crossentropy_from_probabilities(
            target, y_pred, axis
        )
    if invalid is not None:
        values = ops.where(invalid, ops.zeros_like(values), values)
    return values, invalid


def _invalid_error(y_true, count):
    del count  # the message counts values (`unit_interval_error`), not samples
    return unit_interval_error(y_true, "probabilities in [0, 1]", _FIX)


def safe_binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy with the same value and nonzero gradient on TF, torch and JAX.

    Function form of `SafeBinaryCrossentropy` (see there for the formula and the floors).
    Invalid targets (outside [0, 1], NaN) raise in eager code; in compiled code the affected
    samples are NaN (the function has no counter; the class counts them instead).

    Args:
        y_true: Tensor of targets in [0, 1], shape `(batch, ..., d)`.
        y_pred: Tensor of probabilities (or logits with `from_logits=True`), same shape.
        from_logits: Bool. Whether `y_pred` holds logits.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + 0.5 * s`.
        axis: Int. The axis averaged over. Defaults to `-1`.

    Returns:
        Per-sample losses, shape `(batch, ...)`.

    Raises:
        ValueError: in eager code, if a target is outside [0, 1] or NaN.

    Example:

    >>> safe_binary_crossentropy([[0.0, 1.0]], [[1.0, 1.0]])  # finite: [8.66] in float32
    """
    _check_label_smoothing(label_smoothing)
    _check_axis(axis)
    y_pred = ops.convert_to_tensor(y_pred)
    check = TargetCheck(y_pred, lambda count: _invalid_error(y_true, count))
    values, invalid = _binary_parts(y_true, y_pred, from_logits, label_smoothing, axis, check)
    values, _, _ = resolve_invalid(values, invalid, values, None)
    return values


@keras.saving.register_keras_serializable(package="xstable")
class SafeBinaryCrossentropy(SafeCrossentropyBase):
    """Binary cross-entropy with the same value and nonzero gradient on TF, torch and JAX.

    Keras's `BinaryCrossentropy` on a sigmoid output computes different things per backend:
    TF recovers the logits hidden behind the sigmoid and uses the stable formula, torch and
    JAX clip the probability to `[1e-7, 1 - 1e-7]`, so a saturated output has a zero gradient
    there and a loss capped at 16.1 (see docs/safe-losses.md for measured numbers). This loss
    uses one formula on the tensor it is given, on every backend:

    Formula:

    ```python
    p = clip(y_pred, 0, 1)                         # value only; gradient passes through
    log_p = log(max(p, tiny))                      # tiny: smallest normal, 1.18e-38 in float32
    log_not_p = log(max(1 - p, epsneg / 2))        # epsneg / 2 = 2**-25 in float32
    loss = mean(-(y * log_p + (1 - y) * log_not_p), axis=axis)
    ```

    The floors act on the value only: the gradient is `1 / max(p, tiny)` (resp. for `1 - p`),
    never zero and never infinite, so a saturated sigmoid output still gets the full gradient
    `p - y` through the sigmoid wherever `p` is not exactly 0 or 1 in floating point. Where
    the sigmoid itself has rounded to exactly 1.0 (logit above ~16.6 in float32) its own
    derivative is 0 and no probability-space loss can recover it: use `from_logits=True`
    there. With `from_logits=True` the stable log-sigmoid formula is used, written with one
    branch predicate so even the gradient at logit 0 is identical across backends.

    Targets outside [0, 1] (and NaN targets) raise `ValueError` in eager code. In compiled
    code (`fit` on TF and JAX) they are left out of the mean and counted in
    `invalid_target_counter`, which shows in `fit` logs and History by itself (the loss
    reports it to the model that compiles it). If the counter cannot record (JAX, the loss
    called outside a model's `fit`), those samples are NaN instead of a silent 0.

    Args:
        from_logits: Bool. Whether `y_pred` holds logits rather than probabilities.
        label_smoothing: Float in [0, 1]. Targets become `y * (1 - s) + 0.5 * s`.
        axis: Int. The axis averaged over. Defaults to `-1`.
        reduction: As in Keras: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or `None`.
        name: String. Defaults to `"safe_binary_crossentropy"`.
        dtype: Dtype of the loss computation. Defaults to `keras.backend.floatx()`.

    Raises:
        ValueError: for a bad `label_smoothing` or `reduction`, and in eager code for targets
            outside [0, 1].
        TypeError: for a non-numeric `label_smoothing` or a non-int `axis`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=xstable.losses.SafeBinaryCrossentropy())
    history = model.fit(x, y)
    history.history["safe_binary_crossentropy_invalid_targets"]   # per-epoch counts
    ```
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="safe_binary_crossentropy",
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
            *_binary_parts(
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

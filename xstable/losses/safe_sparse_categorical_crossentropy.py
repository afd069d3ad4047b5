"""`SafeSparseCategoricalCrossentropy`: sparse cross-entropy that never ignores a bad label."""

import keras
import numpy as np
from keras import ops

from xstable import backend
from xstable.losses import _arguments, _crossentropy_kernels, _log_probabilities
from xstable.losses._safe_crossentropy_base import (
    SafeCrossentropyBase,
    TargetCheck,
    resolve_invalid,
)
from xstable.numerics import _limits

__all__ = ["SafeSparseCategoricalCrossentropy", "safe_sparse_categorical_crossentropy"]


def _check_label_shape(labels, y_pred, axis):
    """Raises Keras's shape error when labels are not one per sample (e.g. one-hot rows)."""
    rank = len(y_pred.shape)
    expected = [d for i, d in enumerate(y_pred.shape) if i != axis % rank]
    matches = len(labels.shape) == rank - 1 and all(
        a is None or b is None or a == b for a, b in zip(labels.shape, expected)
    )
    if not matches:
        raise ValueError(
            "`y_true` must hold one integer class label per sample: shape "
            f"{tuple(expected)} (or with a 1 at the class axis) for `y_pred` of shape "
            f"{tuple(y_pred.shape)}. For one-hot or soft targets use "
            "SafeCategoricalCrossentropy. "
            f"Received: y_true.shape={tuple(labels.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )


def _sparse_parts(y_true, y_pred, from_logits, ignore_class, axis, check):
    """Per-sample losses (0 where invalid or ignored), the invalid mask (`None` when
    `check` found every label valid eagerly) and the ignored mask (`None`
    without `ignore_class`)."""
    y_pred = ops.convert_to_tensor(y_pred)
    if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(y_pred.dtype)):
        y_pred = ops.cast(y_pred, keras.backend.floatx())
    labels = ops.convert_to_tensor(y_true)
    if len(labels.shape) == len(y_pred.shape) and labels.shape[axis] == 1:
        labels = ops.squeeze(labels, axis=axis)
    _check_label_shape(labels, y_pred, axis)
    num_classes = y_pred.shape[axis]
    is_int = keras.backend.is_int_dtype(keras.backend.standardize_dtype(labels.dtype))
    # Without `ignore_class` and with a static class count, labels select by comparison with
    # the class ids (`_one_hot`), and bad labels only need counting.
    by_comparison = ignore_class is None and num_classes is not None
    if by_comparison and check.on_host(
        labels, lambda host: _invalid_count(host, num_classes, is_int)
    ):
        # Eager code, every label checked on the host and in range: nothing to mask.
        invalid = ignored = usable = None
        label_values = labels
    else:
        invalid, ignored, usable, label_values = _label_masks(
            labels, num_classes, ignore_class, is_int, check
        )
    # Integer labels compared with the class ids need no masking: an out-of-range label
    # matches no class, so its one-hot row is all 0 and its value and gradient exactly 0
    # (two selects and their backward fewer in a traced step). Float labels are cast to
    # int32 (1.5 would become 1), and the gather path indexes: both need the masks.
    needs_masking = usable is not None and not (is_int and by_comparison)
    if not needs_masking:
        safe_labels = label_values
        if keras.backend.standardize_dtype(safe_labels.dtype) != "int32":
            safe_labels = ops.cast(safe_labels, "int32")
    else:
        # Out-of-range labels are replaced before the lookup: JAX's one_hot would silently
        # give an all-zero row (loss 0) and torch would fail inside the kernel.
        safe_labels = ops.where(usable, label_values, ops.zeros_like(label_values))
        safe_labels = ops.cast(safe_labels, "int32")
    if num_classes is None:  # class count unknown until run time: gather instead
        values = _picked_by_gather(y_pred, safe_labels, from_logits, axis)
    else:
        one_hot = _one_hot(
            safe_labels, num_classes, axis, len(y_pred.shape), y_pred.dtype, check.eager
        )
        if from_logits:
            log_p = _log_probabilities.categorical_log_probabilities(y_pred, from_logits, axis)
            # Select, not multiply: log_softmax can be -inf where logits overflow.
            picked = ops.where(ops.greater(one_hot, 0), log_p, ops.zeros_like(log_p))
            values = ops.minimum(-ops.sum(picked, axis=axis), _limits.max_value(y_pred.dtype))
        else:
            values = _crossentropy_kernels.categorical_crossentropy_from_probabilities(
                one_hot, y_pred, axis
            )
    if needs_masking:
        values = ops.where(usable, values, 0.0)
    return values, invalid, ignored


def _invalid_count(labels, num_classes, is_int):
    """The number of labels outside `[0, num_classes)` (or not integers) in a NumPy array."""
    if is_int:
        return np.count_nonzero((labels < 0) | (labels >= num_classes))
    with np.errstate(invalid="ignore"):
        valid = (labels >= 0) & (labels < num_classes) & (labels == np.floor(labels))
    return labels.size - np.count_nonzero(valid)


def _label_masks(labels, num_classes, ignore_class, is_int, check):
    """`(invalid, ignored, usable, label_values)` as device masks; `invalid` is `None` (and
    `usable` too without `ignore_class`) when `check(invalid)` found them all valid eagerly."""
    # Each keras.ops call is a separate dispatch on eager torch: integer labels skip the
    # float cast and the integrality test (always true for them), and without
    # `ignore_class` there is no ignored mask to combine.
    if is_int:
        label_values = labels
        in_range = (labels >= 0) & (labels < num_classes)
    else:
        label_values = ops.cast(labels, "float32")
        in_range = (
            ops.greater_equal(label_values, 0)
            & ops.less(label_values, num_classes)
            & ops.equal(label_values, ops.floor(label_values))
        )
    if ignore_class is not None:
        ignored = ops.equal(label_values, ignore_class)
        invalid = ~in_range & ~ignored
        usable = in_range & ~ignored
    else:
        ignored = None
        invalid = ~in_range
        usable = in_range
    if check(invalid):
        invalid = None
        if ignored is None:
            usable = None  # every label checked and in range: nothing to replace or mask
    return invalid, ignored, usable, label_values


# Class ids of eager one-hot selections, by backend, device, dtype and shape, so that eager
# calls do not rebuild them every step. Never cached from traced code, where TF and XLA fold
# them into a constant anyway.
_CLASS_IDS = {}


def _class_ids(num_classes, shape, dtype, like, eager):
    if not eager:
        return ops.reshape(ops.arange(num_classes, dtype=dtype), shape)
    key = (
        backend.NAME,
        str(getattr(like, "device", None)),
        keras.backend.standardize_dtype(dtype),
        tuple(shape),
    )
    class_ids = _CLASS_IDS.get(key)
    if class_ids is None:
        class_ids = ops.reshape(ops.arange(num_classes, dtype=dtype), shape)
        _CLASS_IDS[key] = class_ids
    return class_ids


def _one_hot(labels, num_classes, axis, rank, dtype, eager=False):
    """`labels` one-hot along `axis` of a rank-`rank` result, as a comparison with class ids.

    A one-hot selection, not take_along_axis: Keras's TF take_along_axis is ~40 graph ops of
    index broadcasting. A comparison with class ids, not `ops.one_hot`, except on TF (one
    `OneHot` kernel there): on eager torch `ops.one_hot` dispatches several more ops, and XLA
    folds the class ids into a constant. Labels outside `[0, num_classes)` give an all-zero row
    either way.
    `eager=True` (concrete labels) reuses cached class ids.
    """
    axis = axis % rank
    if backend.ONE_HOT_OP_IS_FASTEST:
        return ops.one_hot(labels, num_classes, axis=axis, dtype=dtype)
    shape = [1] * rank
    shape[axis] = num_classes
    class_ids = _class_ids(num_classes, shape, labels.dtype, labels, eager)
    return ops.cast(ops.equal(ops.expand_dims(labels, axis), class_ids), dtype)


def _picked_by_gather(y_pred, safe_labels, from_logits, axis):
    log_p = _log_probabilities.categorical_log_probabilities(y_pred, from_logits, axis)
    log_p = ops.moveaxis(log_p, axis, -1)
    picked = ops.squeeze(
        ops.take_along_axis(log_p, ops.expand_dims(safe_labels, -1), axis=-1), axis=-1
    )
    return ops.minimum(-picked, _limits.max_value(picked.dtype))


def safe_sparse_categorical_crossentropy(
    y_true, y_pred, from_logits=False, ignore_class=None, axis=-1
):
    """Sparse categorical cross-entropy with Keras's values; out-of-range labels give NaN.

    Function form of `SafeSparseCategoricalCrossentropy`. Ignored labels (`ignore_class`)
    give loss 0 (use the class form to leave them out of the mean). Out-of-range labels give
    a NaN loss, in eager and compiled code alike.

    Args:
        y_true: Tensor of integer labels, shape `(batch, ...)` or `(batch, ..., 1)`.
        y_pred: Tensor of probabilities (or logits), shape `(batch, ..., num_classes)`.
        from_logits: Bool. Whether `y_pred` holds logits.
        ignore_class: Int or `None`. A label value to leave out (e.g. a padding class).
        axis: Int. The class axis of `y_pred`. Defaults to `-1`.

    Returns:
        Per-sample losses, shape `(batch, ...)`.

    Raises:
        ValueError: if `y_true` does not hold one label per sample (e.g. one-hot rows).
        TypeError: for a non-bool `from_logits` or a non-int `axis` or `ignore_class`.

    Example:

    >>> safe_sparse_categorical_crossentropy([1], [[0.9, 0.1]])  # [2.303]
    """
    from_logits = _arguments.check_bool("from_logits", from_logits)
    axis = _arguments.check_int("axis", axis)
    ignore_class = _arguments.check_int("ignore_class", ignore_class, allow_none=True)
    y_pred = ops.convert_to_tensor(y_pred)
    check = TargetCheck(y_pred)
    values, invalid, _ = _sparse_parts(y_true, y_pred, from_logits, ignore_class, axis, check)
    values, _, _ = resolve_invalid(values, invalid, values, None, "nan")
    return values


@keras.saving.register_keras_serializable(package="xstable")
class SafeSparseCategoricalCrossentropy(SafeCrossentropyBase):
    """Sparse categorical cross-entropy, identical on every backend, never silently 0.

    Formula (the same as `SafeCategoricalCrossentropy` with a one-hot target):

    ```python
    loss = -log(max(p[label], tiny))        # p clipped to [0, 1] and normalized, value only
    # from_logits=True: loss = -log_softmax(y_pred)[label]
    ```

    On healthy data the values are Keras's (probabilities normalized and clipped to
    `[epsilon, 1 - epsilon]`, in value only), and `fit`/`evaluate`/History return what they
    return with the Keras loss. Labels that are not one per sample (one-hot rows) raise
    Keras's shape error, on every backend, when the loss is traced or called.

    Labels outside `[0, num_classes)` (or non-integer, or NaN) behave differently in Keras per
    backend: TF raises on CPU and gives NaN on GPU, torch fails in the kernel, JAX's one-hot
    gives an all-zero row and a silent loss of 0. Here, identically on every backend, eager
    and compiled, such a sample is left out of the mean and counted in
    `invalid_target_counter` (`invalid_targets="mask"`, default; a batch whose labels are
    all invalid has loss 0.0), or has a NaN loss (`invalid_targets="nan"`). List the
    counter to see it: `model.compile(loss=loss, metrics=loss.counters)`. `ignore_class`
    labels are left out of the mean, as in Keras, and are not counted as invalid.

    Args:
        from_logits: Bool. Whether `y_pred` holds logits.
        ignore_class: Int or `None`. A label value to leave out of the loss.
        axis: Int. The class axis of `y_pred`. Defaults to `-1`.
        invalid_targets: `"mask"` (default) or `"nan"` (see above).
        reduction: As in Keras. Defaults to `"sum_over_batch_size"`.
        name: String. Defaults to `"safe_sparse_categorical_crossentropy"`.
        dtype: Dtype of the loss computation. Defaults to `keras.backend.floatx()`.

    Raises:
        ValueError: for a bad `reduction` or `invalid_targets`; when called, for labels
            that are not one per sample.
        TypeError: for a non-bool `from_logits`, a non-int `axis` or `ignore_class`, or a
            non-string `name`.

    Example:

    ```python
    loss = xstable.losses.SafeSparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, metrics=loss.counters)
    ```
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        axis=-1,
        invalid_targets="mask",
        reduction="sum_over_batch_size",
        name="safe_sparse_categorical_crossentropy",
        dtype=None,
    ):
        from_logits = _arguments.check_bool("from_logits", from_logits)
        axis = _arguments.check_int("axis", axis)
        ignore_class = _arguments.check_int("ignore_class", ignore_class, allow_none=True)
        super().__init__(
            name=name, reduction=reduction, dtype=dtype, invalid_targets=invalid_targets
        )
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis

    def per_sample(self, y_true, y_pred, check):
        return _sparse_parts(y_true, y_pred, self.from_logits, self.ignore_class, self.axis, check)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "ignore_class": self.ignore_class,
                "axis": self.axis,
            }
        )
        return config

"""`SafeLoss`: wraps any loss; non-finite per-sample losses leave the mean and are counted."""

import keras
from keras import ops

from xstable import backend
from xstable.losses import _arguments, _reduction
from xstable.losses.loss_event_count import LossEventCount

__all__ = ["SafeLoss"]


def _resolve(loss):
    if isinstance(loss, keras.losses.Loss):
        return loss, getattr(loss, "name", None)
    if isinstance(loss, str):
        resolved = keras.losses.get(loss)
        if resolved is None:
            raise ValueError(f"`loss` names no Keras loss. Received: loss={loss!r}")
        if isinstance(resolved, keras.losses.Loss):
            return resolved, resolved.name
        return resolved, getattr(resolved, "__name__", loss)
    if callable(loss):
        return loss, getattr(loss, "__name__", type(loss).__name__)
    raise TypeError(
        "`loss` must be a loss name (e.g. 'mse'), a function `fn(y_true, y_pred)` returning "
        "per-sample losses, or a `keras.losses.Loss`. "
        f"Received: loss={loss!r} of type {type(loss).__name__}"
    )


def _align_ranks(y_true, y_pred):
    # Same convention as Keras's LossFunctionWrapper: a trailing axis of size 1 is squeezed
    # or added so `(batch,)` targets meet `(batch, 1)` predictions.
    if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    elif len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1)
    return y_true, y_pred


@keras.saving.register_keras_serializable(package="xstable")
class SafeLoss(keras.losses.Loss):
    """Wraps a loss so that non-finite per-sample losses are left out and counted.

    A single NaN label, an `inf` prediction or a `log(0)` in one sample makes the batch loss
    NaN and, through the gradient, every weight. `SafeLoss` computes the wrapped loss per
    sample, drops the samples whose loss is NaN or infinite from the mean (the mean is over the
    finite samples), and counts them in `nonfinite_counter`. Gradient entries reaching
    `y_pred` that are NaN or infinite (the backward pass of a dropped sample computes
    `0 * inf`) are set to 0, so the finite samples still train the model.

    The loss returns what the wrapped Keras loss returns on finite data, so `fit`,
    `evaluate` and History are unchanged. To see the count in logs and History (as
    `<name>_nonfinite`), list the counter as a metric:
    `model.compile(loss=loss, metrics=loss.counters)`. Listed, it is reset every epoch and
    counts on every backend; not listed, nothing reports it.

    Formula:

    ```python
    values = inner_per_sample_loss(y_true, y_pred)   # e.g. mean over the last axis
    finite = isfinite(values)
    loss = sum(where(finite, values, 0) * sample_weight) / count(finite)
    nonfinite_count += count(not finite)
    ```

    Args:
        loss: A loss name (`"mse"`), a function `fn(y_true, y_pred)` returning per-sample
            losses, or a `keras.losses.Loss` (its `call`, i.e. its per-sample values, is used;
            its own reduction is replaced by this one's).
        reduction: As in Keras: `"sum_over_batch_size"` (default; mean over finite samples),
            `"sum"`, `"mean"`, `"mean_with_sample_weight"`, `"none"` or `None` (masked
            samples are 0).
        name: String. Defaults to `"safe_<inner name>"`.
        dtype: Dtype of the loss computation. Defaults to `keras.backend.floatx()`.

    Raises:
        TypeError: if `loss` is not a name, a callable or a `keras.losses.Loss`.
        TypeError: if `name` is not a string.
        ValueError: if `loss` names no Keras loss, or `reduction` is invalid.

    Example:

    ```python
    loss = xstable.losses.SafeLoss("mse")
    model.compile(optimizer="adam", loss=loss, metrics=loss.counters)
    history = model.fit(x, y_with_some_nan_labels)
    history.history["safe_mean_squared_error_nonfinite"]  # per-epoch counts
    ```
    """

    def __init__(self, loss, reduction="sum_over_batch_size", name=None, dtype=None):
        self._inner, inner_name = _resolve(loss)
        self.loss = loss
        _reduction.check_reduction(reduction)
        _arguments.check_name(name)
        super().__init__(name=name or f"safe_{inner_name}", reduction=reduction, dtype=dtype)
        self.nonfinite_counter = LossEventCount(name=f"{self.name}_nonfinite")

    @property
    def counters(self):
        """The loss's counters: list them in `compile(metrics=...)` to see them in logs."""
        return [self.nonfinite_counter]

    @property
    def metrics(self):
        """The same list as `counters`."""
        return self.counters

    def call(self, y_true, y_pred):
        """Per-sample values of the wrapped loss (non-finite values included)."""
        if isinstance(self._inner, keras.losses.Loss):
            return self._inner.call(y_true, y_pred)
        y_true, y_pred = _align_ranks(y_true, y_pred)
        return self._inner(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
            values = self.call(y_true, backend.zero_nonfinite_gradient(y_pred))
            if keras.backend.standardize_dtype(values.dtype) != self.dtype:
                values = ops.cast(values, self.dtype)
            finite = ops.isfinite(values)
            values = ops.where(finite, values, ops.zeros_like(values))
            finite_count = _reduction.count(finite)
            nonfinite_count = _reduction.count_complement(finite, finite_count)
            # The count itself tells whether the update persists: a boolean reduction is
            # concrete under an eager `jax.grad` (the values are tracers), traced under jit.
            self.nonfinite_counter.record(nonfinite_count, like=nonfinite_count)
            # A batch whose every sample's loss was non-finite has no loss: NaN, with a NaN
            # gradient to the predictions (see reduce_masked).
            return _reduction.reduce_masked(
                values,
                finite,
                sample_weight,
                self.reduction,
                count_of_valid=finite_count,
                undefined_if_empty=True,
                probe=y_pred,
            )

    def get_config(self):
        config = super().get_config()
        config.update({"loss": keras.saving.serialize_keras_object(self.loss), "dtype": self.dtype})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)

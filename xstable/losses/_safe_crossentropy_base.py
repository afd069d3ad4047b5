"""Shared machinery of the safe cross-entropies: validation policy, counter, reduction."""

import keras
from keras import ops

from xstable import _model_reporting
from xstable.losses import _backend_tracing, _reduction
from xstable.losses.loss_event_count import LossEventCount


def invalid_target_error(argument, what, count, total, details, fix):
    return ValueError(
        f"`{argument}` must hold {what}; {count} of {total} values do not ({details}). "
        f"Received: {argument} with {total} values. {fix}"
    )


def resolve_invalid(values, invalid, like, counter, raise_fn):
    """Applies the invalid-target policy to per-sample `values` (0 where `invalid`).

    Eager: raise (via `raise_fn(count)`) if anything is invalid. Traced: if `counter` can
    record in this computation, count the invalid samples and leave them out of the mean;
    otherwise make them NaN, so the problem is visible rather than a silent 0.
    Returns `(values, valid)`.
    """
    count = ops.sum(ops.cast(invalid, "int32"))
    if _backend_tracing.is_eager(like):
        count_value = int(ops.convert_to_numpy(count))
        if count_value:
            raise raise_fn(count_value)
        return values, ops.logical_not(invalid)
    if counter is not None and counter.record(count, like=like):
        return values, ops.logical_not(invalid)
    nan = ops.full_like(values, float("nan"))
    return ops.where(invalid, nan, values), ops.ones_like(invalid, dtype="bool")


class SafeCrossentropyBase(keras.losses.Loss):
    """Base of the safe cross-entropies: holds the invalid-target counter and reduces."""

    def __init__(self, name, reduction, dtype):
        _reduction.check_reduction(reduction)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.invalid_target_counter = LossEventCount(name=f"{self.name}_invalid_targets")
        self._reporter = _model_reporting.ModelReporter(self, lambda: self.metrics, stateful=True)

    @property
    def metrics(self):
        """The loss's counters; reported in the `fit` logs of the model compiling it."""
        return [self.invalid_target_counter]

    def per_sample(self, y_true, y_pred):
        """Returns `(values, invalid, excluded)`: per-sample losses (0 where invalid or
        excluded), the invalid-target mask, and a mask of samples left out on purpose
        (`ignore_class`) or `None`."""
        raise NotImplementedError

    def invalid_error(self, y_true, y_pred, count):
        """Returns the `ValueError` raised in eager code for `count` invalid targets."""
        raise NotImplementedError

    def call(self, y_true, y_pred):
        values, invalid, _ = self.per_sample(y_true, y_pred)
        values, _ = resolve_invalid(
            values, invalid, y_pred, None, lambda count: self.invalid_error(y_true, y_pred, count)
        )
        return values

    def __call__(self, y_true, y_pred, sample_weight=None):
        self._reporter.report()
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            values, invalid, excluded = self.per_sample(y_true, y_pred)
            values, valid = resolve_invalid(
                values,
                invalid,
                y_pred,
                self.invalid_target_counter,
                lambda count: self.invalid_error(y_true, y_pred, count),
            )
            if excluded is not None:
                valid = valid & ops.logical_not(excluded)
            return _reduction.reduce_masked(values, valid, sample_weight, self.reduction)

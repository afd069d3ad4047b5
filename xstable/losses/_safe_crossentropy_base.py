"""Shared machinery of the safe cross-entropies: validation policy, counter, reduction."""

import keras
import numpy as np
from keras import ops

from xstable import _model_reporting
from xstable.losses import _backend_tracing, _reduction
from xstable.losses.loss_event_count import LossEventCount


def invalid_target_error(argument, what, count, total, details, fix):
    return ValueError(
        f"`{argument}` must hold {what}; {count} of {total} values do not ({details}). "
        f"Received: {argument} with {total} values. {fix}"
    )


class TargetCheck:
    """Checks targets in eager code and raises for invalid ones; in traced code, does nothing.

    Two ways to check, both returning True when the targets were checked (eagerly: the
    caller then has nothing to mask; on eager torch that skips ~8 dispatches and their
    backward) and False in traced code (the caller masks invalid samples, see
    `resolve_invalid`):

    - `check(invalid)` takes a device mask of invalid samples and reads `any` on the host.
    - `check.on_host(target, count_invalid)` copies the target to the host and counts there
      with NumPy: one transfer instead of the ~5 comparison dispatches of a device mask plus
      `any` (on eager torch, 512 labels: ~7 us against ~18 us;
      `benchmarks/probe_sparse_eager_costs.py`). Use it when only the count is needed.

    Args:
        like: A tensor of the computation (tells eager from traced).
        raise_fn: `raise_fn(count)` returns the error to raise for `count` invalid samples.
    """

    def __init__(self, like, raise_fn):
        self.eager = _backend_tracing.is_eager(like)
        self._raise_fn = raise_fn

    def __call__(self, invalid):
        if not self.eager:
            return False
        if bool(ops.convert_to_numpy(ops.any(invalid))):
            raise self._raise_fn(int(ops.convert_to_numpy(ops.sum(ops.cast(invalid, "int32")))))
        return True

    def on_host(self, target, count_invalid):
        """In eager code, raises if `count_invalid(numpy target)` is nonzero; returns True.

        Returns False without reading `target` in traced code, and when `target` itself
        is traced (JAX: targets differentiated eagerly under `jax.grad`); `check(invalid)`
        then decides.
        """
        if not (self.eager and _backend_tracing.is_eager(target)):
            return False
        count = int(count_invalid(ops.convert_to_numpy(target)))
        if count:
            raise self._raise_fn(count)
        return True


def _samples_outside_unit_interval(targets, axis):
    """The number of samples with a target outside [0, 1] (or NaN) in a NumPy array."""
    with np.errstate(invalid="ignore"):
        in_range = (targets >= 0) & (targets <= 1)
    if in_range.ndim == 0:
        return int(not in_range)
    return np.count_nonzero(~np.all(in_range, axis=axis))


def invalid_unit_interval_samples(y_true, axis, check):
    """The device mask of samples with a target outside [0, 1] (or NaN) along `axis`, or
    `None` when `check` checked the targets eagerly (and raised for any bad one)."""
    if check.on_host(y_true, lambda host: _samples_outside_unit_interval(host, axis)):
        return None
    # Operators, not ops.greater_equal etc.: the same ops, without the ~20 us per call that
    # keras.ops spends converting scalars and resolving dtypes on eager torch.
    invalid = ops.any(~((y_true >= 0) & (y_true <= 1)), axis=axis)
    return None if check(invalid) else invalid


def unit_interval_error(y_true, what, fix):
    """The eager `ValueError` for targets outside [0, 1]: counts values, of all values."""
    y = ops.convert_to_numpy(ops.convert_to_tensor(y_true)).astype("float64")
    count = int(np.count_nonzero(~((y >= 0) & (y <= 1))))
    finite = y[y == y]
    details = (
        f"min={finite.min() if finite.size else 'n/a'}, "
        f"max={finite.max() if finite.size else 'n/a'}, NaN={int((y != y).sum())}"
    )
    return invalid_target_error("y_true", what, count, y.size, details, fix)


def resolve_invalid(values, invalid, like, counter):
    """Applies the invalid-target policy of traced code to per-sample `values`.

    `values` are 0 where `invalid`. If `counter` can record in this computation, the invalid
    samples are counted and left out of the mean; otherwise they are made NaN, so the problem
    is visible rather than a silent 0. `invalid=None` (checked eagerly) changes nothing.
    Returns `(values, valid, count_of_valid)`: `valid=None` means every sample;
    `count_of_valid` is the number of valid samples when it was counted here, else `None`.
    """
    if invalid is None:
        return values, None, None
    if counter is not None:
        invalid_count = _reduction.count(invalid)
        if counter.record(invalid_count, like=like):
            valid_count = _reduction.count_complement(invalid, invalid_count)
            return values, ops.logical_not(invalid), valid_count
    return ops.where(invalid, float("nan"), values), None, None


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

    def per_sample(self, y_true, y_pred, check):
        """Returns `(values, invalid, excluded)`: per-sample losses, the invalid-target mask
        (`None` when `check(invalid)` said the targets were checked eagerly; otherwise the
        values are 0 where invalid) and a mask of samples left out on purpose
        (`ignore_class`) or `None`."""
        raise NotImplementedError

    def invalid_error(self, y_true, y_pred, count):
        """Returns the `ValueError` raised in eager code for `count` invalid targets."""
        raise NotImplementedError

    def _check(self, y_true, y_pred):
        return TargetCheck(y_pred, lambda count: self.invalid_error(y_true, y_pred, count))

    def call(self, y_true, y_pred):
        values, invalid, _ = self.per_sample(y_true, y_pred, self._check(y_true, y_pred))
        values, _, _ = resolve_invalid(values, invalid, y_pred, None)
        return values

    def __call__(self, y_true, y_pred, sample_weight=None):
        self._reporter.report()
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            values, invalid, excluded = self.per_sample(
                y_true, y_pred, self._check(y_true, y_pred)
            )
            values, valid, valid_count = resolve_invalid(
                values, invalid, y_pred, self.invalid_target_counter
            )
            if excluded is not None:
                included = ~excluded
                valid = included if valid is None else valid & included
                valid_count = None
            return _reduction.reduce_masked(
                values, valid, sample_weight, self.reduction, count_of_valid=valid_count
            )

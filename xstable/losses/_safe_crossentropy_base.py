"""Shared machinery of the safe cross-entropies: invalid-target policy, counter, reduction."""

import keras
import numpy as np
from keras import ops

from xstable import backend
from xstable.losses import _arguments, _reduction
from xstable.losses.loss_event_count import LossEventCount


def _is_eager(x):
    """True when `x` holds concrete values that can be inspected on the host right now.

    Only eager code may read data on the host (the targets' check, which skips the masking
    when every target is valid); `keras.ops` cannot tell eager from traced execution.
    """
    return not keras.backend.is_keras_tensor(x) and backend.is_concrete(x)


class TargetCheck:
    """Tells whether targets need masking; in eager code it looks at them on the host first.

    Both ways return True when the targets were checked eagerly and all are valid (the caller
    then has nothing to mask: on eager torch that skips several dispatches and their
    backward), and False otherwise: in traced code, or when some target is invalid. The
    caller then builds the device mask and applies the policy (`resolve_invalid`), so eager
    and compiled code give the same values.

    - `check(invalid)` takes a device mask of invalid samples and reads `any` on the host.
    - `check.on_host(target, count_invalid)` copies the target to the host and counts there
      with NumPy: one transfer instead of the comparison dispatches of a device mask.

    Args:
        like: A tensor of the computation (tells eager from traced).
    """

    def __init__(self, like):
        self.eager = _is_eager(like)

    def __call__(self, invalid):
        if not self.eager:
            return False
        return not bool(ops.convert_to_numpy(ops.any(invalid)))

    def on_host(self, target, count_invalid):
        """In eager code, True if `count_invalid(numpy target)` is 0; False otherwise.

        Returns False without reading `target` in traced code, and when `target` itself is
        traced (JAX: targets differentiated eagerly under `jax.grad`).
        """
        if not (self.eager and _is_eager(target)):
            return False
        return not int(count_invalid(ops.convert_to_numpy(target)))


def _samples_outside_unit_interval(targets, axis):
    """The number of samples with a target outside [0, 1] (or NaN) in a NumPy array."""
    with np.errstate(invalid="ignore"):
        in_range = (targets >= 0) & (targets <= 1)
    if in_range.ndim == 0:
        return int(not in_range)
    return np.count_nonzero(~np.all(in_range, axis=axis))


def invalid_unit_interval_samples(y_true, axis, check):
    """The device mask of samples with a target outside [0, 1] (or NaN) along `axis`, or
    `None` when `check` found every target valid eagerly."""
    if check.on_host(y_true, lambda host: _samples_outside_unit_interval(host, axis)):
        return None
    # Operators, not ops.greater_equal etc.: the same ops, without the overhead keras.ops
    # spends converting scalars and resolving dtypes on eager torch.
    invalid = ops.any(~((y_true >= 0) & (y_true <= 1)), axis=axis)
    return None if check(invalid) else invalid


def resolve_invalid(values, invalid, like, counter, policy):
    """Applies the invalid-target policy to per-sample `values` (0 where `invalid`).

    `"mask"`: the invalid samples are counted in `counter` (when it can record in this
    computation) and left out of the mean. `"nan"`: their values are NaN. `invalid=None`
    (every target valid) changes nothing. Returns `(values, valid, count_of_valid)`:
    `valid=None` means every sample; `count_of_valid` is the number of valid samples when
    it was counted here, else `None`.
    """
    if invalid is None:
        return values, None, None
    if policy == "nan":
        return ops.where(invalid, float("nan"), values), None, None
    invalid_count = _reduction.count(invalid)
    if counter is not None:
        # The count, not the prediction, tells whether the update persists: it depends on
        # the targets only, so it is concrete in an eager JAX step differentiated by
        # `jax.grad` (whose predictions are tracers) and traced in a jitted one.
        counter.record(invalid_count, like=invalid_count)
    valid_count = _reduction.count_complement(invalid, invalid_count)
    return values, ops.logical_not(invalid), valid_count


class SafeCrossentropyBase(keras.losses.Loss):
    """Base of the safe cross-entropies: holds the invalid-target counter and reduces."""

    def __init__(self, name, reduction, dtype, invalid_targets="mask"):
        _reduction.check_reduction(reduction)
        _arguments.check_name(name)
        self.invalid_targets = _arguments.check_invalid_targets(invalid_targets)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.invalid_target_counter = LossEventCount(name=f"{self.name}_invalid_targets")

    @property
    def counters(self):
        """The loss's counters: list them in `compile(metrics=...)` to see them in logs."""
        return [self.invalid_target_counter]

    @property
    def metrics(self):
        """The same list as `counters`."""
        return self.counters

    def per_sample(self, y_true, y_pred, check):
        """Returns `(values, invalid, excluded)`: per-sample losses, the invalid-target mask
        (`None` when `check` found every target valid; otherwise the values are 0 where
        invalid) and a mask of samples left out on purpose (`ignore_class`) or `None`."""
        raise NotImplementedError

    def call(self, y_true, y_pred):
        values, invalid, _ = self.per_sample(y_true, y_pred, TargetCheck(y_pred))
        values, _, _ = resolve_invalid(values, invalid, y_pred, None, "nan")
        return values

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            values, invalid, excluded = self.per_sample(y_true, y_pred, TargetCheck(y_pred))
            values, valid, valid_count = resolve_invalid(
                values, invalid, y_pred, self.invalid_target_counter, self.invalid_targets
            )
            # A batch whose targets were all invalid has no loss: NaN (see reduce_masked).
            undefined_if_empty = None
            if valid is not None:
                undefined_if_empty = True if excluded is None else ops.any(invalid)
            if excluded is not None:
                included = ~excluded
                valid = included if valid is None else valid & included
                valid_count = None
            return _reduction.reduce_masked(
                values,
                valid,
                sample_weight,
                self.reduction,
                count_of_valid=valid_count,
                undefined_if_empty=undefined_if_empty,
                probe=y_pred,
            )

    def get_config(self):
        config = super().get_config()
        config.update({"invalid_targets": self.invalid_targets, "dtype": self.dtype})
        return config

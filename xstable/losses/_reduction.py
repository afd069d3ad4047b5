"""Keras's loss reductions, with a validity mask: masked entries leave the mean."""

import keras
from keras import ops

from xstable import backend

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"`reduction` must be one of {REDUCTIONS}. Received: reduction={reduction!r}"
        )
    return reduction


def _align(weight, values):
    weight = ops.convert_to_tensor(weight, dtype=values.dtype)
    while len(weight.shape) > len(values.shape) and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, axis=-1)
    while len(weight.shape) < len(values.shape):
        weight = ops.expand_dims(weight, axis=-1)
    return weight


# A float32 sum of 0/1 values is exact while every partial sum is below 2**24.
_EXACT_FLOAT32_COUNT = 2**24


def count(mask):
    """The number of True entries of `mask`, as a float32 scalar tensor.

    Float32 is the dtype of xstable's counters (exact up to 2**24 events); a float16 sum
    would be exact only up to 2048.
    """
    return ops.sum(ops.cast(mask, "float32"))


def count_complement(mask, count_of_mask):
    """The number of False entries of `mask`, given `count_of_mask = count(mask)`.

    With a static size up to 2**24 it is `size - count_of_mask`: one subtraction, exact, and
    one op instead of three (a not, a cast and a sum: each a kernel in a TF graph and a
    dispatch on eager torch). Otherwise the False entries are counted in int32.
    """
    size = _static_size(mask)
    if size is not None and size <= _EXACT_FLOAT32_COUNT:
        return size - count_of_mask
    return ops.cast(ops.sum(ops.cast(ops.logical_not(mask), "int32")), "float32")


def reduce_masked(
    values,
    valid,
    sample_weight,
    reduction,
    count_of_valid=None,
    undefined_if_empty=None,
    probe=None,
):
    """Reduces per-sample `values` as Keras does, leaving out entries where `valid` is False.

    `values` must already be 0 (and finite) where `valid` is False; `valid=None` means all
    entries are valid. With `"sum_over_batch_size"`/`"mean"` the sum is divided by the number
    of valid entries, as Keras does for masked losses. `count_of_valid`, if given, is that
    number already computed (`count`, `count_complement`), so it is not counted twice.

    A mean over no valid entry is undefined. Where the entries were left out because they
    were invalid (`undefined_if_empty`: True, or a boolean scalar tensor), the mean
    reductions return NaN, with a NaN gradient with respect to `probe` (the predictions),
    so that a `GuardedOptimizer` skips the step and a monitor sees it; otherwise (every
    entry excluded on purpose, e.g. `ignore_class`) they return 0, as Keras does.
    """
    dtype = values.dtype
    weights = None
    if sample_weight is not None:
        weights = _align(sample_weight, values)
        if valid is not None:
            weights = weights * ops.cast(valid, dtype)
        weighted = values * weights
    else:
        # `values` is already 0 where not valid: multiplying by the 0/1 mask would change no
        # bit of the value or of its gradient, and costs a dispatch on eager torch.
        weighted = values
    if reduction is None or reduction == "none" or len(values.shape) == 0:
        return weighted
    total = ops.sum(weighted)
    if reduction == "sum":
        return total
    result, empty = _mean(
        total, weights, values, valid, reduction, sample_weight, dtype, count_of_valid
    )
    if undefined_if_empty is None or valid is None:
        return result
    if empty is None:
        empty = ops.equal(count(valid), 0.0)
    if undefined_if_empty is not True:
        empty = ops.logical_and(empty, undefined_if_empty)
    return _nan_where(empty, result, probe)


def _nan_where(empty, result, probe):
    """`result`, or NaN where `empty`, with a NaN gradient to `probe` only there.

    `probe * undefined` has the derivative `undefined`: 0 where the mean is defined (the
    `where` also sends it a zero cotangent, and 0 * 0 stays 0, even for an infinite probe)
    and NaN where it is not.
    """
    undefined = ops.where(empty, float("nan"), 0.0)
    undefined = ops.cast(undefined, result.dtype)
    if probe is None:
        return ops.where(empty, undefined, result)
    probe_sum = ops.sum(ops.cast(probe, result.dtype))
    return ops.where(empty, probe_sum * undefined, result)


def _mean(total, weights, values, valid, reduction, sample_weight, dtype, count_of_valid):
    """The mean reductions; returns `(mean, empty)`, `empty` being the boolean "no valid
    entry counted" when the divisor is that count (else None)."""
    counts_entries = False
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = ops.sum(weights)
    elif valid is None:
        # Every entry counts: a static size stays a Python number (a plain division, no
        # extra eager ops).
        size = _static_size(values)
        divisor = float(size) if size is not None else ops.cast(ops.size(values), dtype)
    else:
        divisor = count(valid) if count_of_valid is None else count_of_valid
        if keras.backend.standardize_dtype(divisor.dtype) != keras.backend.standardize_dtype(dtype):
            divisor = ops.cast(divisor, dtype)
        counts_entries = True
    # Under data parallelism the shards hold different numbers of valid samples: divide by
    # the global count so the replicas' combined gradient is that of the global mean.
    global_divisor = backend.global_mean_divisor(divisor)
    if isinstance(global_divisor, float) and global_divisor > 0:
        return total / global_divisor, None
    empty = ops.equal(global_divisor, 0.0) if counts_entries else None
    if counts_entries and global_divisor is divisor:
        # A local count is 0 or at least 1, and the total is 0 when it is 0: dividing by
        # max(count, 1) is divide_no_nan in two ops instead of six on eager torch.
        return total / ops.maximum(divisor, ops.ones_like(divisor)), empty
    return ops.divide_no_nan(total, global_divisor), empty


def _static_size(values):
    size = 1
    for dim in values.shape:
        if dim is None:
            return None
        size *= dim
    return size

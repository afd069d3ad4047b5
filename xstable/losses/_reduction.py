"""Keras's loss reductions, with a validity mask: masked entries leave the mean."""

from keras import ops

from xstable import _distribution

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


def reduce_masked(values, valid, sample_weight, reduction):
    """Reduces per-sample `values` as Keras does, leaving out entries where `valid` is False.

    `values` must already be 0 (and finite) where `valid` is False; `valid=None` means all
    entries are valid. With
    `"sum_over_batch_size"`/`"mean"` the sum is divided by the number of valid entries (0 if
    there are none), as Keras does for masked losses.
    """
    dtype = values.dtype
    valid_float = None if valid is None else ops.cast(valid, dtype)
    weights = valid_float
    if sample_weight is not None:
        aligned = _align(sample_weight, values)
        weights = aligned if weights is None else weights * aligned
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
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = ops.sum(weights)
    elif valid_float is None:
        # Every entry counts: a static size is a Python number (ops.size and divide_no_nan
        # cost ~170 and ~110 us on eager torch, a plain division ~10 us: probe_op_costs.py).
        size = _static_size(values)
        divisor = float(size) if size is not None else ops.cast(ops.size(values), dtype)
    else:
        divisor = ops.sum(valid_float)
    # Under data parallelism the shards hold different numbers of valid samples: divide by
    # the global count so the replicas' combined gradient is that of the global mean.
    divisor = _distribution.global_mean_divisor(divisor)
    if isinstance(divisor, float) and divisor > 0:
        return total / divisor
    return ops.divide_no_nan(total, divisor)


def _static_size(values):
    size = 1
    for dim in values.shape:
        if dim is None:
            return None
        size *= dim
    return size

"""The `keras.ops` calls the loss kernels make every step, straight to torch on torch.

On eager torch every `keras.ops` call converts its arguments and resolves dtypes before the
kernel runs: for a 512x10 float32 tensor `ops.maximum(x, 1e-38)` takes 27 us against 3.4 for
`torch.clamp_min`, `ops.clip` 31 against 3.9, `ops.sum` 15 against 7.5, `ops.where` with a
scalar 27 against 9.7 (`KERAS_BACKEND=torch python benchmarks/probe_op_costs.py`, one thread,
about 05:10 UTC on 2026-12-06). A cross-entropy kernel makes about eight such calls per
training step; going direct made a step 2-3.5 % faster (paired against the `keras.ops`
kernels: SCCE 0.980 [0.963-0.998], CCE 0.965 [0.952-0.991], BCE 0.975 [0.959-0.997];
`bench_losses.py --only scce,cce,bce --copies 3 --rounds 151 --block-seconds 0.05
--skip-saturation --against 2a48128`, torch, about 05:06 UTC).

On the torch backend, float32 and float64 tensors go to the torch function `keras.ops` itself
ends up calling, with the same arguments, so the values are those of `keras.ops`; every other
backend and dtype goes through `keras.ops` unchanged (XLA and TF graphs pay the overhead once,
at tracing). `isfinite` is the one function computed another way (`x * 0 == 0`, the same
booleans: 9.6 us against 11.4 for `torch.isfinite` and 14.6 for `ops.isfinite` in the same
probe, about 06:35 UTC). One difference, a fix: Keras's torch
`ops.maximum(float64 tensor, Python float)` returns float32, so a float64 floor of `tiny`
(2.2e-308) became 0; `maximum` here keeps float64, as TF does.
`tests/losses/test_kernel_ops.py` checks every function bit for bit.

The functions take `keras.ops`'s arguments, limited to what the kernels pass: a tensor first,
Python numbers for bounds and fill values.
"""

import keras
from keras import ops

_ON_TORCH = keras.config.backend() == "torch"
if _ON_TORCH:
    import torch

    _DIRECT_DTYPES = (torch.float32, torch.float64)


def _direct(x):
    # Half precision stays with keras.ops: its torch clip goes through float32 on CPU.
    return _ON_TORCH and isinstance(x, torch.Tensor) and x.dtype in _DIRECT_DTYPES


def clip(x, low, high):
    """`ops.clip(x, low, high)` for Python-number bounds."""
    if _direct(x):
        return torch.clamp(x, low, high)
    return ops.clip(x, low, high)


def maximum(x, floor):
    """`ops.maximum(x, floor)` for a Python-number `floor` (NaN stays NaN)."""
    if _direct(x):
        return torch.clamp_min(x, floor)
    return ops.maximum(x, floor)


def sum(x, axis=None, keepdims=False):  # noqa: A001 (the keras.ops name, module-scoped)
    """`ops.sum(x, axis, keepdims)` of a float tensor."""
    if _direct(x):
        return torch.sum(x, dim=axis, keepdim=keepdims)
    return ops.sum(x, axis=axis, keepdims=keepdims)


def log(x):
    """`ops.log(x)`."""
    if _direct(x):
        return torch.log(x)
    return ops.log(x)


def where(condition, x1, x2):
    """`ops.where(condition, x1, x2)`; one of `x1`, `x2` a float tensor, the other a tensor
    of the same dtype or a Python number."""
    if _direct(x1) and (isinstance(x2, (int, float)) or _same_dtype(x1, x2)):
        return torch.where(condition, x1, x2)
    if isinstance(x1, (int, float)) and _direct(x2):
        return torch.where(condition, x1, x2)
    return ops.where(condition, x1, x2)


def isfinite(x):
    """`ops.isfinite(x)` of a float tensor."""
    if _direct(x):
        # Two kernels where torch.isfinite composes several (probe_op_costs.py times both).
        # `x * 0` is +-0 for every finite x and NaN for +-inf and NaN.
        return x * 0.0 == 0.0
    return ops.isfinite(x)


def count(mask):
    """The number of True entries of a boolean `mask`, as a float32 scalar tensor: what
    `ops.sum(ops.cast(mask, "float32"))` gives."""
    if _ON_TORCH and isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
        return torch.sum(mask.to(torch.float32))
    return ops.sum(ops.cast(mask, "float32"))


def _same_dtype(x1, x2):
    return isinstance(x2, torch.Tensor) and x2.dtype == x1.dtype

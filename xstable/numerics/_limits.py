"""Floating-point limits per dtype, as Python floats usable inside traced code."""

import functools

import keras
import numpy as np

_BFLOAT16 = {"tiny": 1.1754944e-38, "max": 3.3895314e38, "epsneg": 2.0**-9}


def float_dtype(x, dtype=None):
    """Returns the float dtype name to compute `x` in (ints become `floatx()`)."""
    name = keras.backend.standardize_dtype(dtype or getattr(x, "dtype", None) or "float32")
    if not keras.backend.is_float_dtype(name):
        return keras.backend.floatx()
    return name


def _finfo(dtype):
    return _finfo_of(keras.backend.standardize_dtype(dtype))


@functools.cache
def _finfo_of(name):
    if name == "bfloat16":
        return _BFLOAT16
    info = np.finfo(np.dtype(name))
    return {"tiny": float(info.tiny), "max": float(info.max), "epsneg": float(info.epsneg)}


def tiny(dtype):
    """Smallest positive normal number of `dtype` (subnormals may be flushed to 0)."""
    return _finfo(dtype)["tiny"]


def max_value(dtype):
    """Largest finite number of `dtype`."""
    return _finfo(dtype)["max"]


def epsneg(dtype):
    """Gap between 1 and the next smaller number of `dtype`: the smallest nonzero `1 - p`."""
    return _finfo(dtype)["epsneg"]


def log_max(dtype):
    """Largest `x` whose `exp(x)` is finite in `dtype` on every backend.

    Taken a few ulps below `log(max)` so that backends whose `exp` rounds up still stay finite.
    """
    name = keras.backend.standardize_dtype(dtype)
    if name == "bfloat16":
        return 88.0
    np_dtype = np.dtype(name)
    cap = np_dtype.type(np.log(np.finfo(np_dtype).max))
    for _ in range(4):
        cap = np.nextafter(cap, np_dtype.type(0))
    return float(cap)


def half_exponent_scale(dtype):
    """A power of two near `sqrt(max)` of `dtype`, exactly representable with a normal inverse.

    Multiplying by such a constant is exact (barring underflow), which makes it a cheap way to
    bring huge values into range: XLA on CPU divides through a flushed reciprocal, so
    `3e38 / 3e38` is 0 on JAX unless both are scaled down first.
    """
    name = keras.backend.standardize_dtype(dtype)
    if name == "bfloat16":
        return 2.0**64
    max_exponent = int(np.finfo(np.dtype(name)).maxexp)
    return 2.0 ** (max_exponent // 2)


def max_exponent(dtype):
    """The largest power-of-two exponent `e` with `2**e` and `2**-e` both normal in `dtype`."""
    name = keras.backend.standardize_dtype(dtype)
    if name == "bfloat16":
        return 125
    info = np.finfo(np.dtype(name))
    return int(min(info.maxexp - 1, -info.minexp) - 1)

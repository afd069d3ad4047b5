"""`_kernel_ops` must give exactly what `keras.ops` gives, on every backend and dtype.

On torch, float32/float64 tensors take the direct torch call; elsewhere (and for float16)
the function is `keras.ops` itself. Either way the results are compared bit for bit with
`keras.ops` on adversarial values; `maximum` with NumPy, because Keras's torch
`ops.maximum(float64 tensor, Python float)` returns float32 (the float64 `tiny` floor then
underflows to 0), where the direct call keeps float64 as TF and NumPy do.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from tests.helpers import assert_matches_reference, to_numpy
from xstable.losses import _kernel_ops

ADVERSARIAL = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e-45,
    -1e-45,
    1e-38,
    6e-8,
    65504.0,
    7e4,
    3e38,
    -3e38,
    float("inf"),
    float("-inf"),
    float("nan"),
]
values = st.lists(
    st.one_of(st.sampled_from(ADVERSARIAL), st.floats(-10, 10, width=32)), min_size=12, max_size=12
).map(lambda v: np.asarray(v, np.float64).reshape(3, 4))
DTYPES = ["float16", "float32", "float64"]


def _tensor(x, dtype):
    with np.errstate(over="ignore"):  # 3e38 overflows float16 to inf: an adversarial input too
        return ops.convert_to_tensor(x.astype(dtype))


def _same(direct, expected):
    direct, expected = to_numpy(direct), np.asarray(to_numpy(expected))
    assert direct.dtype == expected.dtype
    assert_matches_reference(direct, expected, "exact")


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(values)
def test_each_function_equals_keras_ops(dtype, x):
    t = _tensor(x, dtype)
    host = to_numpy(t)  # JAX without x64 holds float64 input as float32
    tiny = float(np.finfo(host.dtype).tiny)
    _same(_kernel_ops.clip(t, 0.0, 1.0), ops.clip(t, 0.0, 1.0))
    _same(_kernel_ops.maximum(t, tiny), np.maximum(host, np.asarray(tiny, host.dtype)))
    _same(_kernel_ops.log(ops.abs(t)), ops.log(ops.abs(t)))
    _same(_kernel_ops.sum(t), ops.sum(t))
    for axis in (0, -1):
        for keepdims in (False, True):
            _same(
                _kernel_ops.sum(t, axis=axis, keepdims=keepdims),
                ops.sum(t, axis=axis, keepdims=keepdims),
            )
    below = t < tiny
    _same(_kernel_ops.where(below, 1.0, t), ops.where(below, 1.0, t))
    _same(_kernel_ops.where(below, t, 0.0), ops.where(below, t, 0.0))
    _same(_kernel_ops.where(below, t, -t), ops.where(below, t, -t))
    _same(_kernel_ops.isfinite(t), ops.isfinite(t))
    _same(_kernel_ops.count(below), ops.sum(ops.cast(below, "float32")))

"""Adversarial float inputs for property tests."""

import numpy as np
from hypothesis import strategies as st

FLOAT32_TINY = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)

# 0, signed zero, subnormals, the smallest normal, ±3e38, float16 subnormal/overflow points,
# values next to 1 and next to exp's overflow point.
SPECIAL_FLOAT32 = [
    0.0,
    -0.0,
    1e-45,
    1e-40,
    FLOAT32_TINY,
    1e-30,
    1e-7,
    5.96e-8,
    1.0,
    -1.0,
    1.0 - 2.0**-24,
    65504.0,
    65520.0,
    88.7,
    89.0,
    -1000.0,
    3e38,
    -3e38,
    FLOAT32_MAX,
]

finite_float32 = st.one_of(
    st.sampled_from(SPECIAL_FLOAT32),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
)


def float32_arrays(elements=finite_float32, min_size=6, max_size=6):
    # A fixed shape lets eager JAX and TF reuse their compiled kernels between examples.
    return st.lists(elements, min_size=min_size, max_size=max_size).map(
        lambda values: np.asarray(values, dtype=np.float32)
    )

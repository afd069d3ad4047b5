"""Hypothesis strategies shared by the cross-entropy tests: adversarial probabilities, targets."""

import numpy as np
from hypothesis import strategies as st

# Two rows of three class probabilities: zeros of both signs, subnormals, the smallest normal,
# values outside [0, 1] up to the float32 extremes, and any float32 in [0, 1].
raw_probabilities = st.lists(
    st.one_of(
        st.sampled_from([0.0, -0.0, 1e-45, 1e-38, 1e-30, 1.0, 1.5, -0.25, 3e38, -3e38]),
        st.floats(0.0, 1.0, width=32),
    ),
    min_size=6,
    max_size=6,
).map(lambda v: np.asarray(v, np.float32).reshape(2, 3))

# Soft targets in [0, 1], matching `raw_probabilities`' shape.
soft_targets = st.lists(st.sampled_from([0.0, 1.0, 0.25, 0.5, 0.01]), min_size=6, max_size=6).map(
    lambda v: np.asarray(v, np.float32).reshape(2, 3)
)

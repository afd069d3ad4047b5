"""Safe cross-entropies on adversarial inputs: float16 subnormals and overflow, ±3e38, 0, and
non-finite predictions, against float64 references of the documented formula."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.losses import _reference as ref
from tests.losses._compiled import MODES, value_and_grad_in
from xstable.losses import SafeBinaryCrossentropy, SafeCategoricalCrossentropy

F16 = np.finfo(np.float16)
F16_PROBABILITIES = [
    0.0,
    -0.0,
    6e-8,
    1e-7,
    float(F16.tiny),
    1e-3,
    0.5,
    1 - 2.0**-11,
    1.0,
    1.5,
    -1.0,
]
F16_LOGITS = [0.0, 6e-8, 11.1, -17.0, 20.0, 1000.0, -1000.0, 65504.0, -65504.0]
F32_EXTREMES = [0.0, -0.0, 1e-45, 1e-38, 1e-7, 1.0, 3e38, -3e38]

targets = st.lists(st.sampled_from([0.0, 1.0, 0.3]), min_size=6, max_size=6).map(
    lambda v: np.asarray(v, np.float32).reshape(3, 2)
)


def _bce16_reference(y, p16):
    """The documented formula with float16 bounds: `[tiny, 1 - epsilon]` (1 in float16)."""
    clipped = np.clip(p16, np.float16(F16.tiny), np.float16(1.0 - 1e-7))
    not_p = np.maximum((np.float16(1.0) - clipped).astype(np.float64), float(F16.epsneg) / 2)
    p = clipped.astype(np.float64)
    y = y.astype(np.float64)
    return (-(y * np.log(p) + (1 - y) * np.log(not_p))).mean(-1)


@settings(max_examples=20, deadline=None)
@given(
    targets,
    st.lists(
        st.one_of(st.sampled_from(F16_PROBABILITIES), st.floats(0, 1, width=16)),
        min_size=6,
        max_size=6,
    ),
)
def test_float16_probabilities_give_finite_values_like_the_reference(y, p):
    p16 = np.asarray(p, np.float16).reshape(3, 2)
    loss = SafeBinaryCrossentropy(reduction=None, dtype="float16")
    value = to_numpy(loss(y, p16))
    assert value.dtype == np.float16 and np.isfinite(value).all(), (y, p16, value)
    assert_matches_reference(value, _bce16_reference(y, p16), "float16", what="float16 BCE")


@settings(max_examples=20, deadline=None)
@given(
    targets,
    st.lists(
        st.one_of(st.sampled_from(F16_LOGITS), st.floats(-65504, 65504, width=16)),
        min_size=6,
        max_size=6,
    ),
)
def test_float16_logits_give_finite_values_and_gradients_like_the_reference(y, z):
    z16 = np.asarray(z, np.float16).reshape(3, 2)
    loss = SafeBinaryCrossentropy(from_logits=True, reduction=None, dtype="float16")
    value, grad = value_and_grad_in("eager", lambda t: loss(y, t), z16)
    expected, expected_grad = ref.bce_from_logits(y, z16)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (y, z16, value, grad)
    assert_matches_reference(value, expected.mean(-1), "float16", what="float16 value")
    assert_matches_reference(grad, expected_grad / 2, "float16", what="float16 gradient")


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=15, deadline=None)
@given(y=targets, p=st.lists(st.sampled_from(F32_EXTREMES), min_size=6, max_size=6))
def test_float32_extremes_are_clipped_eager_and_compiled(mode, y, p):
    p32 = np.asarray(p, np.float32).reshape(3, 2)
    loss = SafeBinaryCrossentropy(reduction=None)
    value, grad = value_and_grad_in(mode, lambda t: loss(y, t), p32)
    expected, expected_grad = ref.bce_from_probabilities(y, p32)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (y, p32, value, grad)
    assert_matches_reference(value, expected.mean(-1), "cross_backend", what=f"{mode} value")
    assert_matches_reference(grad, expected_grad / 2, "cross_backend", what=f"{mode} gradient")


@pytest.mark.parametrize("mode", MODES)
def test_nan_predictions_are_reported_not_hidden(mode):
    y = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    p = np.array([[np.nan, 0.5], [0.3, 0.6]], np.float32)
    losses = (SafeBinaryCrossentropy(reduction=None), SafeCategoricalCrossentropy(reduction=None))
    for loss in losses:
        value, _ = value_and_grad_in(mode, lambda t, loss=loss: loss(y, t), p)
        assert np.isnan(value[0]) and np.isfinite(value[1]), (type(loss).__name__, value)


def test_float16_softmax_outputs_stay_finite():
    z = np.array([[65504.0, -65504.0, 0.0], [1.0, 2.0, 3.0]], np.float16)
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    p = keras.ops.softmax(keras.ops.convert_to_tensor(z), axis=-1)
    value = to_numpy(SafeCategoricalCrossentropy(reduction=None, dtype="float16")(y, p))
    assert np.isfinite(value).all(), value
    logits_value = to_numpy(
        SafeCategoricalCrossentropy(from_logits=True, reduction=None, dtype="float16")(y, z)
    )
    # 131008 overflows float16: capped at the largest float16, as documented.
    expected = np.minimum(-(y * ref.log_softmax64(z)).sum(-1), float(F16.max))
    assert_matches_reference(logits_value, expected, "float16", what="float16 logits")

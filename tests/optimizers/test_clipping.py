"""Clip transforms against float64 NumPy references, including adversarial inputs."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.helpers import assert_matches_reference, to_numpy
from xstable.optimizers import clipping

# Finite float32 values whose squares sum without overflow, plus the awkward ones: zeros,
# float32 subnormals and values near the float16 limits.
_SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 6e-8, 65504.0, -65504.0, 1e18, -1e18]
_ELEMENTS = st.one_of(
    st.sampled_from(_SPECIAL),
    st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False),
)
_ARRAYS = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=_ELEMENTS
)


def _norm64(g, axis=None, keepdims=False):
    return np.sqrt(np.sum(np.square(g.astype(np.float64)), axis=axis, keepdims=keepdims))


def _tensors(arrays):
    return [keras.ops.convert_to_tensor(a) for a in arrays]


@settings(max_examples=25, deadline=None)
@given(grads=st.lists(_ARRAYS, min_size=1, max_size=3), clipnorm=st.floats(1e-3, 1e3))
def test_clip_by_global_norm_matches_reference(grads, clipnorm):
    norm = np.sqrt(sum(np.sum(np.square(g.astype(np.float64))) for g in grads))
    scale = clipnorm / max(norm, clipnorm)
    clipped = clipping.clip_by_global_norm(_tensors(grads), clipnorm)
    assert_matches_reference(clipping.global_norm(_tensors(grads)), norm, "float32", "global norm")
    for got, g in zip(clipped, grads, strict=True):
        assert_matches_reference(got, g.astype(np.float64) * scale, "float32_loose", "clipped")


@settings(max_examples=25, deadline=None)
@given(grads=st.lists(_ARRAYS, min_size=1, max_size=3), clipnorm=st.floats(1e-3, 1e3))
def test_clip_by_norm_matches_reference(grads, clipnorm):
    for got, g in zip(clipping.clip_by_norm(_tensors(grads), clipnorm), grads, strict=True):
        reference = g.astype(np.float64) * clipnorm / max(_norm64(g), clipnorm)
        assert_matches_reference(got, reference, "float32_loose", "per-variable clipped")


@settings(max_examples=25, deadline=None)
@given(grads=st.lists(_ARRAYS, min_size=1, max_size=3), clipvalue=st.floats(1e-3, 1e3))
def test_clip_by_value_matches_reference(grads, clipvalue):
    for got, g in zip(clipping.clip_by_value(_tensors(grads), clipvalue), grads, strict=True):
        assert_matches_reference(got, np.clip(g, -clipvalue, clipvalue), "float32", "clipped")


def _agc_reference(g, w, clipping_factor, eps):
    g = g.astype(np.float64)
    w = w.astype(np.float64)
    axes = None if g.ndim <= 1 else tuple(range(g.ndim - 1))
    max_norm = clipping_factor * np.maximum(_norm64(w, axes, keepdims=True), eps)
    g_norm = _norm64(g, axes, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        clipped = g * max_norm / np.maximum(g_norm, max_norm)
    return np.where(g_norm > max_norm, clipped, g)


@settings(max_examples=25, deadline=None)
@given(
    pair=hnp.array_shapes(min_dims=1, max_dims=4, max_side=4).flatmap(
        lambda shape: st.tuples(
            hnp.arrays(np.float32, shape, elements=_ELEMENTS),
            hnp.arrays(np.float32, shape, elements=_ELEMENTS),
        )
    ),
    factor=st.floats(1e-3, 10.0),
)
def test_adaptive_clip_matches_reference(pair, factor):
    g, w = pair
    (got,) = clipping.adaptive_clip(_tensors([g]), _tensors([w]), factor, eps=1e-3)
    assert_matches_reference(got, _agc_reference(g, w, factor, 1e-3), "float32_loose", "AGC")


def test_adaptive_clip_is_unitwise_over_output_units():
    # Dense kernel (in=2, out=2): column 0 has a huge gradient, column 1 a small one.
    w = np.array([[1.0, 1.0], [0.0, 1.0]], dtype="float32")
    g = np.array([[30.0, 0.01], [40.0, 0.01]], dtype="float32")
    (got,) = clipping.adaptive_clip(_tensors([g]), _tensors([w]), 0.1)
    # Column 0: max norm 0.1 * 1 -> g scaled from norm 50 to 0.1; column 1 untouched.
    expected = np.array([[0.06, 0.01], [0.08, 0.01]])
    assert_matches_reference(got, expected, "float32", "unit-wise AGC")


def test_non_finite_gradients_stay_non_finite_and_norm_says_so():
    nan_grad = np.array([1.0, np.nan], dtype="float32")
    inf_grad = np.array([np.inf, 1.0], dtype="float32")
    assert np.isnan(to_numpy(clipping.global_norm(_tensors([nan_grad]))))
    assert np.isposinf(to_numpy(clipping.global_norm(_tensors([inf_grad]))))
    assert np.isnan(to_numpy(clipping.clip_by_norm(_tensors([nan_grad]), 1.0)[0])).any()
    assert np.isnan(to_numpy(clipping.clip_by_value(_tensors([nan_grad]), 1.0)[0])).any()
    assert np.isnan(to_numpy(clipping.clip_by_global_norm(_tensors([nan_grad]), 1.0)[0])).all()
    (agc,) = clipping.adaptive_clip(_tensors([nan_grad]), _tensors([np.ones(2, "float32")]), 0.1)
    assert np.isnan(to_numpy(agc)).any()


def test_zero_gradients_stay_zero_and_finite():
    zero = np.zeros((3, 2), dtype="float32")
    assert float(to_numpy(clipping.global_norm(_tensors([zero])))) == 0.0
    for clipped in (
        clipping.clip_by_norm(_tensors([zero]), 1.0),
        clipping.clip_by_global_norm(_tensors([zero]), 1.0),
        clipping.adaptive_clip(_tensors([zero]), _tensors([zero]), 0.1),
    ):
        assert_matches_reference(clipped[0], zero, "exact", "clipped zero gradient")


def test_none_gradients_pass_through():
    g = _tensors([np.ones(2, "float32")])[0]
    assert clipping.clip_by_norm([None, g], 1.0)[0] is None
    assert clipping.clip_by_global_norm([None, g], 1.0)[0] is None
    assert clipping.clip_by_value([None, g], 1.0)[0] is None
    assert clipping.adaptive_clip([None, g], [g, g], 1.0)[0] is None
    assert_matches_reference(clipping.global_norm([None, g]), np.sqrt(2.0), "float32")


def test_global_norm_is_inf_when_the_sum_of_squares_overflows_on_every_backend():
    # Documented: finite gradients around 1e19 and larger give an infinite norm (float32
    # sum of squares), so the guard treats the step as non-finite the same way everywhere.
    for grads in ([np.array([3e38, -3e38], "float32")], [np.full((3, 2), 2e19, "float32")]):
        assert np.isposinf(to_numpy(clipping.global_norm(_tensors(grads))))
    mixed = [np.array([np.inf], "float32"), np.array([np.nan], "float32")]
    assert np.isnan(to_numpy(clipping.global_norm(_tensors(mixed))))
    assert float(to_numpy(clipping.global_norm(_tensors([np.zeros((0,), "float32")])))) == 0.0
    # A non-contiguous gradient (a transposed view) counts every entry once.
    transposed = keras.ops.transpose(
        keras.ops.convert_to_tensor(np.arange(6.0, dtype="float32").reshape(2, 3))
    )
    assert_matches_reference(clipping.global_norm([transposed]), np.sqrt(55.0), "float32")


def _tf_only():
    return pytest.mark.skipif(
        keras.config.backend() != "tensorflow",
        reason="tf.IndexedSlices gradients exist only on TensorFlow",
    )


@_tf_only()
def test_tf_global_norm_of_sparse_gradients_adds_duplicate_rows_like_the_dense_gradient():
    import tensorflow as tf

    values = tf.constant([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    sparse = tf.IndexedSlices(values, tf.constant([0, 0, 2]), tf.constant([4, 2]))
    # Dense rows: [4, 0], [0, 0], [0, 2], [0, 0] -> norm sqrt(20); bfloat16 is cast up.
    assert_matches_reference(clipping.global_norm([sparse]), np.sqrt(20.0), "float32")
    half = tf.constant([[3.0, 4.0]], dtype=tf.bfloat16)
    assert_matches_reference(clipping.global_norm([half]), 5.0, "float32")

import keras
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.losses import _reference as ref
from tests.losses._strategies import raw_probabilities, soft_targets
from tests.numerics._grad import value_and_grad
from xstable.losses import SafeCategoricalCrossentropy, safe_categorical_crossentropy

logits = st.lists(
    st.one_of(st.sampled_from([0.0, 50.0, -50.0, 100.0, 1e4, -1e4]), st.floats(-30, 30, width=32)),
    min_size=6,
    max_size=6,
).map(lambda v: np.asarray(v, np.float32).reshape(2, 3))


@settings(max_examples=20, deadline=None)
@given(logits)
def test_softmax_output_gradient_is_p_minus_y_like_the_float64_reference(z):
    y = np.array([[1.0, 0.0, 0.0], [0.2, 0.0, 0.8]], np.float32)

    def fn(t):
        return safe_categorical_crossentropy(y, keras.ops.softmax(t))

    value, grad = value_and_grad(fn, z)
    p32 = to_numpy(keras.ops.softmax(z)).astype(np.float64)
    p_norm = p32 / p32.sum(-1, keepdims=True)
    expected = -(y * np.log(np.clip(p_norm, float(ref.LOW), float(ref.HIGH)))).sum(-1)
    # Where a target's probability is past Keras's clip, the gradient is that of the clipped
    # log (nonzero, not p - y): exact from the logits only (test_logits_model.py).
    usable = (p32 >= ref.LOW) | (y == 0)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (z, value, grad)
    assert_matches_reference(value, expected, "cross_backend")
    rows = usable.all(-1)
    # p - y with p either the backend's float32 softmax or the exact one: near p = 1, float32
    # p is quantized to 6e-8, and the chain rule through the softmax may land on either side.
    exact = np.exp(ref.log_softmax64(z)) - y
    expected_grad = np.where(np.abs(grad - exact) <= 1e-5 * np.abs(exact) + 1e-7, exact, p32 - y)
    assert_matches_reference(
        grad[rows], expected_grad[rows], "cross_backend", what="logit gradient"
    )


def test_from_logits_matches_reference_including_extreme_logits():
    z = np.array([[3e38, -3e38, 0.0], [1.0, 2.0, 3.0]], np.float32)
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    value, grad = value_and_grad(lambda t: safe_categorical_crossentropy(y, t, from_logits=True), z)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (value, grad)
    assert_matches_reference(value[1], -ref.log_softmax64(z[1:])[0, 2], "cross_backend")


def test_config_round_trips_and_matches_keras():
    loss = SafeCategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()
    y, p = np.array([[0.0, 1.0]]), np.array([[0.3, 0.7]], np.float32)
    ours = SafeCategoricalCrossentropy(label_smoothing=0.1)(y, p)
    theirs = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(y, p)
    assert_matches_reference(ours, to_numpy(theirs), "float32")


def _flush(x):
    return np.where(np.abs(x) < ref.TINY, 0.0, x)


def _reference_from_probabilities(y, p, flush=False):
    """Float64 value, d/dp and d/dy of the documented formula on raw probabilities.

    `flush=True` flushes subnormal inputs and the subnormal normalized probabilities to 0
    as TF and XLA on CPU do (the clip then acts on 0 instead of the subnormal).
    """
    y = np.asarray(y, np.float64)
    clipped = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    if flush:
        clipped = _flush(clipped)
    total = clipped.sum(-1, keepdims=True)
    normalizes = total >= ref.TINY
    divisor = np.where(normalizes, total, 1.0)
    # q as float32 rounds it, subnormals included (their few bits carry into the gradient).
    q = (clipped.astype(np.float32) / divisor.astype(np.float32)).astype(np.float64)
    if flush:
        q = _flush(q)
    floored = np.clip(q, float(ref.LOW), float(ref.HIGH))
    along_q = -y / floored
    through_total = np.where(normalizes, (along_q * q).sum(-1, keepdims=True), 0.0)
    grad_p = (along_q - through_total) / divisor
    # The magnitude of the two terms that cancel in d/dy_pred: float32 rounding of either
    # is an absolute error of about eps32 times this.
    cancelled = (np.abs(along_q) + np.abs(through_total)) / divisor
    return -(y * np.log(floored)).sum(-1), grad_p, -np.log(floored), cancelled


def _matches(actual, reference, atol):
    """Within tolerance, or overflowed to the infinity a float64 reference beyond float32 has."""
    with np.errstate(invalid="ignore", over="ignore"):
        overflowed = (
            np.isinf(actual)
            & (np.abs(reference) >= np.finfo(np.float32).max)
            & (np.sign(actual) == np.sign(reference))
        )
        return overflowed | (np.abs(actual - reference) <= 1e-5 * np.abs(reference) + atol)


@settings(max_examples=30, deadline=None)
@given(soft_targets, raw_probabilities)
# A true class of probability 0 in a row of subnormal sum (torch: d/dy_pred = -inf, beyond
# float32 in the exact reference too; found by a fresh Hypothesis run).
@example(
    y=np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32),
    p=np.array([[0.0, 1e-38, 1e-38], [0.0, 0.0, 0.0]], np.float32),
)
def test_raw_probabilities_value_and_both_gradients_match_float64_reference(y, p):
    """Unnormalized, out-of-range and all-zero rows: the value, d/dy_pred and d/dy_true are
    those of the documented formula (clip in value only, normalize, clip as Keras does).

    The gradient is compared where float32 can hold it: a true-class probability of exactly
    0 in a row summing to less than 1 has a large d/dy_pred; compared where representable."""
    value, grad_p = value_and_grad(safe_categorical_crossentropy, y, p, argnum=1)
    _, grad_y = value_and_grad(safe_categorical_crossentropy, y, p, argnum=0)
    # TF and XLA on CPU flush subnormal numbers to 0 (the documented caveat of `tiny`), in
    # the inputs and in intermediate results (a normalized probability below tiny), so each
    # element must match the reference with or without that flush.
    exact = _reference_from_probabilities(y, p)
    flushed = _reference_from_probabilities(y, p, flush=True)
    cancelled = np.maximum(exact[3], flushed[3])
    # d/dy_pred is a difference of two terms: allow the cross_backend tolerance plus two
    # float32 roundings of the terms that cancel.
    grad_atol = 1e-7 + 2.0**-22 * cancelled
    loss, dloss_dp, dloss_dy = (
        np.where(_matches(actual, a, atol), a, b)
        for actual, a, b, atol in zip(
            (value, grad_p, grad_y), exact, flushed, (1e-7, grad_atol, 1e-7)
        )
    )
    assert np.isfinite(value).all(), (y, p, value)
    assert_matches_reference(value, loss, "cross_backend")
    representable = np.abs(dloss_dp) < np.finfo(np.float32).max
    assert np.isfinite(grad_p[representable]).all(), (y, p, grad_p)
    deviation = np.abs(grad_p - dloss_dp)[representable]
    bound = (1e-5 * np.abs(dloss_dp) + grad_atol)[representable]
    assert (deviation <= bound).all(), ("d/dy_pred", y, p, grad_p, dloss_dp, cancelled)
    assert_matches_reference(grad_y, dloss_dy, "cross_backend", what="gradient wrt y_true")


def test_infinite_probabilities_are_clipped_like_any_other_with_finite_gradients():
    # +inf clips to 1 and -inf to 0 in value. The gradient stays finite: the hand-written
    # kernel (TF, torch) passes it straight through the clip; the autodiff form (JAX) gives 0
    # at the infinite entry, whose value the clip holds constant.
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    p = np.array([[np.inf, 0.5, 0.5], [-np.inf, 0.25, 0.75]], np.float32)
    value, grad = value_and_grad(safe_categorical_crossentropy, y, p, argnum=1)
    expected, _, _, _ = _reference_from_probabilities(y, p)
    assert_matches_reference(value, expected, "cross_backend")
    assert np.isfinite(grad).all(), grad
    finite = np.isfinite(p)
    _, expected_grad, _, _ = _reference_from_probabilities(y, p)
    assert_matches_reference(grad[finite], expected_grad[finite], "cross_backend", what="d/dy_pred")

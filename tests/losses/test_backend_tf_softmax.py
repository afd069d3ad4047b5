"""The TensorFlow-only softmax recomputation behind the safe cross-entropies' probabilities."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference
from xstable.losses import safe_categorical_crossentropy, safe_sparse_categorical_crossentropy

pytestmark = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="tests the TensorFlow-only softmax recomputation "
    "(xstable/losses/_backend_tf_softmax.py); other backends never see a graph Softmax op",
)

logits = st.lists(
    st.one_of(
        st.sampled_from([0.0, 50.0, -50.0, 1e4, -1e4, 3e38, -3e38, np.inf, -np.inf, np.nan]),
        st.floats(-30, 30, width=32),
    ),
    min_size=8,
    max_size=8,
).map(lambda v: np.asarray(v, np.float32).reshape(2, 4))

TARGETS = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.3, 0.0, 0.7]], np.float32)
LABELS = np.array([0, 3], np.int32)


def _value_and_logit_gradient(loss, y, z, traced):
    """Loss and d sum(loss) / d z through `tf.nn.softmax(z)`, in a graph or eagerly."""
    import tensorflow as tf

    def compute(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            values = loss(y, tf.nn.softmax(z))
            total = tf.reduce_sum(values)
        return values, tape.gradient(total, z)

    if traced:
        compute = tf.function(compute)
    values, grad = compute(tf.constant(y), tf.constant(z))
    return values.numpy(), grad.numpy()


@settings(max_examples=40, deadline=None)
@given(logits)
def test_traced_loss_and_gradient_match_the_eager_softmax_path(z):
    # Eagerly the probabilities come from TF's own Softmax kernel; traced, they are
    # recomputed from its logits. Same values and gradients, NaN exactly where NaN.
    for loss, y in (
        (safe_categorical_crossentropy, TARGETS),
        (safe_sparse_categorical_crossentropy, LABELS),
    ):
        eager = _value_and_logit_gradient(loss, y, z, traced=False)
        traced = _value_and_logit_gradient(loss, y, z, traced=True)
        for what, expected, actual in zip(("value", "logit gradient"), eager, traced):
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=what)
            finite = np.isfinite(expected)
            assert_matches_reference(actual[finite], expected[finite], "cross_backend", what)


def test_a_traced_softmax_output_is_read_through_its_logits():
    import tensorflow as tf

    from xstable.losses import _backend_tf_softmax

    seen = {}

    @tf.function
    def loss_of_softmax(z):
        probabilities = tf.nn.softmax(z)
        seen["recomputed"] = _backend_tf_softmax.recomputed_softmax(probabilities, -1)
        seen["probabilities"] = probabilities
        return safe_categorical_crossentropy(tf.constant(TARGETS), probabilities)

    loss_of_softmax.get_concrete_function(tf.TensorSpec((2, 4), tf.float32))
    if not _backend_tf_softmax.recompute_pays():  # TF_ENABLE_ONEDNN_OPTS=0, a GPU, not x86
        assert seen["recomputed"] is seen["probabilities"]
        return
    assert seen["recomputed"] is not seen["probabilities"]
    # The loss never reads the Softmax op's output, so Grappler can prune the op.
    assert seen["probabilities"].consumers() == []


@pytest.mark.parametrize(
    "setting, machine, pays",
    [
        ("", "x86_64", True),
        ("1", "AMD64", True),
        ("0", "x86_64", False),
        ("false", "x86_64", False),
        ("", "aarch64", False),
        ("", "arm64", False),
    ],
)
def test_the_recomputation_runs_only_where_onednn_runs_the_softmax(
    monkeypatch, setting, machine, pays
):
    import tensorflow as tf

    from xstable.losses import _backend_tf_softmax

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", setting)
    monkeypatch.setattr(_backend_tf_softmax.platform, "machine", lambda: machine)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert _backend_tf_softmax.recompute_pays() is pays
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["a GPU"])
    assert _backend_tf_softmax.recompute_pays() is False


def test_anything_but_a_float32_last_axis_graph_softmax_is_left_as_given():
    import tensorflow as tf

    from xstable.losses import _backend_tf_softmax

    eager = tf.nn.softmax(tf.zeros((2, 3)))
    assert _backend_tf_softmax.recomputed_softmax(eager, -1) is eager
    kept = {}

    @tf.function
    def trace(z):
        cases = {
            "not a softmax": tf.sigmoid(z),
            "float16": tf.nn.softmax(tf.cast(z, tf.float16)),
            "another axis": tf.nn.softmax(z),
        }
        axes = {"not a softmax": -1, "float16": -1, "another axis": 0}
        for name, tensor in cases.items():
            kept[name] = _backend_tf_softmax.recomputed_softmax(tensor, axes[name]) is tensor
        return z

    trace.get_concrete_function(tf.TensorSpec((2, 3), tf.float32))
    assert kept == {"not a softmax": True, "float16": True, "another axis": True}


@settings(max_examples=30, deadline=None)
@given(logits, st.integers(0, 2**32 - 1))
def test_recomputed_softmax_and_its_gradient_match_tf_nn_softmax(z, seed):
    # Any upstream gradient, not only a cross-entropy's (whose sum(g * p) is ~0).
    import tensorflow as tf

    from xstable.losses import _backend_tf_softmax

    upstream = tf.constant(np.random.default_rng(seed).normal(size=z.shape).astype(np.float32))

    @tf.function
    def both(z):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            given = tf.nn.softmax(z)
            recomputed = _backend_tf_softmax.recomputed_softmax(given, -1)
            given_total = tf.reduce_sum(upstream * given)
            recomputed_total = tf.reduce_sum(upstream * recomputed)
        return (
            given,
            recomputed,
            tape.gradient(given_total, z),
            tape.gradient(recomputed_total, z),
        )

    if not _backend_tf_softmax.recompute_pays():
        pytest.skip("the recomputation is off here (TF_ENABLE_ONEDNN_OPTS=0, a GPU, not x86)")
    given, recomputed, given_grad, recomputed_grad = (t.numpy() for t in both(tf.constant(z)))
    # A row holding +inf or NaN is NaN throughout, as JAX's, torch's and TF's own (Eigen)
    # softmax make it; oneDNN's kernel leaves its other entries at 0.
    undefined = np.any(np.isnan(z) | np.isposinf(z), axis=-1)
    assert np.isnan(recomputed[undefined]).all() and np.isnan(recomputed_grad[undefined]).all()
    # Elsewhere the two kernels' probabilities may differ in the last bit, and the backward's
    # `g - sum(g * p)` cancels near p = 1: absolute deviations up to a few ulp of |g| (~3).
    tolerance = (1e-5, 1e-6)
    for what, expected, actual in (
        ("probabilities", given, recomputed),
        ("gradient", given_grad, recomputed_grad),
    ):
        assert np.isfinite(actual[~undefined]).all(), what
        assert_matches_reference(actual[~undefined], expected[~undefined], tolerance, what)

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.losses import _reference as ref
from tests.numerics._grad import value_and_grad
from xstable.losses import SafeBinaryCrossentropy, safe_binary_crossentropy

PROBABILITIES = [
    0.0,
    1e-45,
    1e-40,
    ref.TINY,
    1e-30,
    1e-8,
    1e-7,
    0.3,
    0.5,
    1 - 2.0**-23,
    1 - 2.0**-24,
    1.0,
]
probabilities = st.lists(
    st.one_of(st.sampled_from(PROBABILITIES), st.floats(0.0, 1.0, width=32)), min_size=6, max_size=6
).map(lambda v: np.asarray(v, np.float32).reshape(3, 2))
targets = st.lists(st.sampled_from([0.0, 1.0, 0.01, 0.3, 0.99]), min_size=6, max_size=6).map(
    lambda v: np.asarray(v, np.float32).reshape(3, 2)
)


@settings(max_examples=20, deadline=None)
@given(targets, probabilities)
def test_probabilities_value_and_gradient_match_float64_reference(y, p):
    value, grad = value_and_grad(lambda t: safe_binary_crossentropy(y, t), p)
    loss, dloss = ref.bce_from_probabilities(y, p)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (y, p, value, grad)
    assert (grad[(p > 0) & (p < 1) & (y != p)] != 0).all(), "gradient vanished"
    assert_matches_reference(value, loss.mean(axis=-1), "cross_backend")
    assert_matches_reference(grad, dloss / 2.0, "cross_backend", what="gradient wrt p")


@settings(max_examples=20, deadline=None)
@given(targets, probabilities)
def test_gradient_wrt_soft_targets_matches_float64_reference(y, p):
    """Soft targets produced by another network train through the loss: d/dy is
    `(log(1 - p) - log(p)) / d` for `p` clipped to `[epsilon, 1 - epsilon]`."""
    _, grad = value_and_grad(safe_binary_crossentropy, y, p, argnum=0)
    clipped, not_p = ref.clipped_probabilities(p)
    expected = np.log(not_p) - np.log(clipped)
    assert_matches_reference(grad, expected / 2.0, "cross_backend", what="gradient wrt y_true")


LOGITS = [0.0, -0.0, 1e-3, 16.0, 16.7, 20.0, 100.0, -16.2, -87.0, -104.0, 3e38, -3e38]


@settings(max_examples=20, deadline=None)
@given(
    targets,
    st.lists(
        st.one_of(st.sampled_from(LOGITS), st.floats(-1e4, 1e4, width=32)), min_size=6, max_size=6
    ),
)
def test_logits_value_and_gradient_match_float64_reference(y, z):
    z = np.asarray(z, np.float32).reshape(3, 2)
    value, grad = value_and_grad(lambda t: safe_binary_crossentropy(y, t, from_logits=True), z)
    loss, dloss = ref.bce_from_logits(y, z)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (y, z, value, grad)
    assert_matches_reference(value, loss.mean(axis=-1), "cross_backend")
    assert_matches_reference(grad, dloss / 2.0, "cross_backend", what="gradient wrt logits")


def test_saturated_sigmoid_outputs_keep_a_nonzero_gradient():
    # Keras clips p to [1e-7, 1 - 1e-7] on torch/JAX: zero gradient for all of these. The
    # clip here acts on the value only; the exact logit gradient needs the logits
    # (`to_logits_model`, tests/losses/test_logits_model.py).
    z = np.array([[-17.0], [-30.0], [-80.0], [16.2], [-25.0], [12.0]], np.float32)
    y = np.array([[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]], np.float32)

    def loss_of_logits(t):
        return safe_binary_crossentropy(y, keras.ops.sigmoid(t))

    value, grad = value_and_grad(loss_of_logits, z)
    # The reference starts from the probabilities this backend's sigmoid produced: near 1
    # backends' sigmoids differ in the last bit, which no loss can undo (see docs).
    p32 = to_numpy(keras.ops.sigmoid(z))
    loss, dloss = ref.bce_from_probabilities(y, p32)
    # d loss/d z = dloss/dp * p (1 - p) = p - y for the float32 p every backend sees.
    expected_grad = dloss * p32.astype(np.float64) * (1.0 - p32.astype(np.float64))
    assert_matches_reference(value, loss[:, 0], "cross_backend")
    assert_matches_reference(grad, expected_grad, "cross_backend", what="gradient wrt logits")
    assert (grad[:4] != 0).all(), grad


def test_exact_one_has_keras_finite_value():
    out = to_numpy(safe_binary_crossentropy(np.array([[0.0]]), np.array([[1.0]], "float32")))
    expected = -np.log(np.float64(np.float32(1.0) - ref.HIGH))
    assert_matches_reference(out, np.array([expected]), "float32")


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"`label_smoothing`.*Received: label_smoothing=2"):
        SafeBinaryCrossentropy(label_smoothing=2)
    with pytest.raises(TypeError, match=r"`axis`.*Received: axis='x'"):
        SafeBinaryCrossentropy(axis="x")
    with pytest.raises(ValueError, match=r"`reduction`.*Received: reduction='avg'"):
        SafeBinaryCrossentropy(reduction="avg")


def test_matches_keras_where_keras_agrees_with_itself():
    y = np.array([[0.0, 1.0], [1.0, 0.3]], np.float32)
    p = np.array([[0.2, 0.7], [0.9, 0.5]], np.float32)
    w = np.array([0.3, 1.5], np.float32)
    for reduction in ["sum_over_batch_size", "sum", None]:
        ours = SafeBinaryCrossentropy(label_smoothing=0.1, reduction=reduction)(y, p, w)
        keras_loss = keras.losses.BinaryCrossentropy(label_smoothing=0.1, reduction=reduction)
        assert_matches_reference(ours, to_numpy(keras_loss(y, p, w)), "float32")


def test_config_round_trip():
    loss = SafeBinaryCrossentropy(from_logits=True, label_smoothing=0.2, reduction="sum", name="b")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, SafeBinaryCrossentropy)
    assert restored.get_config() == loss.get_config()
    y, z = np.array([[1.0, 0.0]]), np.array([[3.0, -1.0]], np.float32)
    assert_matches_reference(restored(y, z), to_numpy(loss(y, z)), "exact")


def _seed_002_model(bias):
    """Seed 002, example 2: Dense(10, relu) -> Dense(1, sigmoid), output bias forced large."""
    rng = np.random.default_rng(2)
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(10, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.layers[0].set_weights(
        [rng.normal(0, 0.3, (10, 10)).astype("float32"), np.zeros(10, "float32")]
    )
    model.layers[1].set_weights(
        [rng.normal(0, 0.3, (10, 1)).astype("float32"), np.array([bias], "float32")]
    )
    x = rng.random((100, 10)).astype("float32")
    y = rng.integers(0, 2, (100, 1)).astype("float32")
    return model, x, y


def _reference_forward(model, x, y):
    """Float64 loss and output-kernel gradient of the safe BCE, from the backend's outputs.

    The hidden layer is recomputed in float64; the probabilities are the float32 ones the
    backend's model produced (its sigmoid's last bit is the backend's, not the loss's).
    """
    (w1, b1) = model.layers[0].get_weights()
    h = np.maximum(x.astype(np.float64) @ w1 + b1, 0.0)
    p32 = to_numpy(keras.ops.stop_gradient(model(x)))
    loss, dloss = ref.bce_from_probabilities(y, p32)
    p = p32.astype(np.float64)
    grad_w2 = h.T @ (dloss * p * (1.0 - p)) / len(x)
    return loss.mean(), grad_w2


def _loss_and_output_kernel_gradient(model, x, y, loss):
    """Loss and its gradient wrt the output layer's kernel, through the sigmoid."""
    hidden = to_numpy(keras.ops.stop_gradient(model.layers[0](x)))
    kernel0, bias = model.layers[1].get_weights()

    def fn(kernel):
        logits = keras.ops.matmul(keras.ops.convert_to_tensor(hidden), kernel)
        logits = logits + keras.ops.convert_to_tensor(bias)
        return loss(y, keras.ops.sigmoid(logits))

    return value_and_grad(fn, kernel0)


@pytest.mark.parametrize("bias", [10.0, -25.0], ids=["seed002-bias10", "fully-saturated"])
def test_seed_002_saturated_outputs_agree_with_reference_and_train(bias):
    model, x, y = _seed_002_model(bias)
    expected_loss, expected_grad = _reference_forward(model, x, y)
    value, grad = _loss_and_output_kernel_gradient(model, x, y, SafeBinaryCrossentropy())
    assert_matches_reference(value, np.array(expected_loss), "cross_backend")
    assert_matches_reference(grad, expected_grad, "cross_backend", what="output-kernel gradient")
    # Past Keras's clip the gradient is small but not zero (the logits restore the exact one:
    # test_logits_model.py), so Adam still moves every weight.
    assert np.abs(grad).max() > 0, f"gradient vanished: {grad.ravel()}"
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=SafeBinaryCrossentropy())
    history = model.fit(x, y, epochs=2, batch_size=50, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all(), history.history
    moved = [np.abs(a - b).max() for a, b in zip(model.get_weights(), before, strict=True)]
    assert min(moved) > 0, f"some weights did not move: {moved}"


def test_seed_003_soft_targets_agree_with_reference_and_train():
    # Seed 003, example 2: soft targets clipped to [0.01, 0.99], sigmoid hidden and output.
    rng = np.random.default_rng(3)
    x = rng.random((100, 10)).astype("float32")
    y = np.clip(rng.random((100, 1)), 0.01, 0.99).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(8, activation="sigmoid"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    w1 = rng.normal(0, 0.5, (10, 8)).astype("float32")
    w2 = rng.normal(0, 0.5, (8, 1)).astype("float32")
    model.set_weights([w1, np.zeros(8, "float32"), w2, np.zeros(1, "float32")])
    h = ref.sigmoid64(x.astype(np.float64) @ w1)
    p32 = to_numpy(keras.ops.stop_gradient(model(x)))
    assert_matches_reference(p32, ref.sigmoid64(h @ w2), "float32", what="model output")
    loss, dloss = ref.bce_from_probabilities(y, p32)
    p = p32.astype(np.float64)
    expected_grad = h.T @ (dloss * p * (1 - p)) / len(x)
    value, grad = _loss_and_output_kernel_gradient(model, x, y, SafeBinaryCrossentropy())
    assert_matches_reference(value, np.array(loss.mean()), "cross_backend")
    assert_matches_reference(grad, expected_grad, "cross_backend", what="output-kernel gradient")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=SafeBinaryCrossentropy())
    history = model.fit(x, y, epochs=3, batch_size=50, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_compiled_fit_counts_invalid_targets_in_history(backend):
    rng = np.random.default_rng(0)
    x = rng.random((16, 3)).astype("float32")
    y = (rng.random((16, 1)) > 0.5).astype("float32")
    y[4] = 3.0
    loss = SafeBinaryCrossentropy()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss=loss, metrics=loss.counters, jit_compile=backend != "torch")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    assert history.history["safe_binary_crossentropy_invalid_targets"] == [1.0, 1.0]
    assert np.isfinite(history.history["loss"]).all()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 0.3, 1.0, -0.1, 1.5, float("nan"), float("inf"), -float("inf")]),
        min_size=2,
        max_size=12,
    ).filter(lambda v: len(v) % 2 == 0)
)
def test_masking_leaves_out_exactly_the_samples_with_bad_targets(values):
    y = np.asarray(values, np.float32).reshape(-1, 2)
    bad = ~np.all((y >= 0) & (y <= 1), axis=-1)
    p = np.full(y.shape, 0.5, "float32")
    out = to_numpy(SafeBinaryCrossentropy(reduction=None)(y, p))
    assert_matches_reference(out, np.where(bad, 0.0, np.log(2.0)), "float32")
    loss = SafeBinaryCrossentropy()
    mean = to_numpy(loss(y, p))
    # Every target invalid: no loss is defined for the batch, NaN.
    assert_matches_reference(mean, np.array(np.nan if bad.all() else np.log(2.0)), "float32")
    assert float(to_numpy(loss.invalid_target_counter.result())) == bad.sum()

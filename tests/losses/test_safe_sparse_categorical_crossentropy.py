import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.losses import _reference as ref
from tests.numerics._grad import value_and_grad
from xstable.losses import (
    SafeSparseCategoricalCrossentropy,
    safe_sparse_categorical_crossentropy,
)


def test_value_and_gradient_match_reference_and_keras_on_ordinary_inputs():
    z = np.array([[1.0, 2.0, -1.0], [0.0, 50.0, -50.0]], np.float32)
    labels = np.array([2, 0])
    value, grad = value_and_grad(
        lambda t: safe_sparse_categorical_crossentropy(labels, t, from_logits=True), z
    )
    log_p = ref.log_softmax64(z)
    assert_matches_reference(value, -log_p[[0, 1], labels], "cross_backend")
    expected_grad = np.exp(log_p) - np.eye(3)[labels]
    assert_matches_reference(grad, expected_grad, "cross_backend", what="gradient")
    keras_value = keras.losses.sparse_categorical_crossentropy(labels, z, from_logits=True)
    assert_matches_reference(value, to_numpy(keras_value), "float32")


def test_ignore_class_leaves_the_mean_like_keras():
    labels = np.array([0, 255, 1])
    p = np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]], np.float32)
    ours = SafeSparseCategoricalCrossentropy(ignore_class=255)(labels, p)
    theirs = keras.losses.SparseCategoricalCrossentropy(ignore_class=255)(labels, p)
    assert_matches_reference(ours, to_numpy(theirs), "float32")


def test_config_round_trip():
    loss = SafeSparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, name="s")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()


def test_compiled_fit_counts_out_of_range_labels(backend):
    rng = np.random.default_rng(0)
    x = rng.random((16, 3)).astype("float32")
    labels = rng.integers(0, 3, (16,))
    labels[5] = 9
    loss = SafeSparseCategoricalCrossentropy()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=loss, metrics=loss.counters, jit_compile=backend != "torch")
    history = model.fit(x, labels, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert history.history["safe_sparse_categorical_crossentropy_invalid_targets"] == [1.0]


@pytest.mark.parametrize("bad_label", [9, -1])
def test_compiled_loss_with_an_out_of_range_integer_label_is_the_mean_of_the_valid_ones(
    backend, bad_label
):
    # Integer labels are not masked (an out-of-range label matches no class id, so its
    # one-hot row is all 0): the loss must still be the mean over the valid samples.
    rng = np.random.default_rng(1)
    x = rng.random((16, 3)).astype("float32")
    labels = rng.integers(0, 3, (16,))
    labels[5] = bad_label
    loss = SafeSparseCategoricalCrossentropy()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, metrics=loss.counters,
                  jit_compile=backend != "torch")
    p = to_numpy(model.predict(x, verbose=0)).astype("float64")
    valid = labels != bad_label
    picked = np.clip(p[np.arange(16)[valid], labels[valid]], float(ref.LOW), float(ref.HIGH))
    expected = -np.log(picked).mean()
    history = model.fit(x, labels, epochs=1, batch_size=16, verbose=0, shuffle=False)
    assert_matches_reference(np.float32(history.history["loss"][0]), expected, "float32", "loss")
    assert history.history["safe_sparse_categorical_crossentropy_invalid_targets"] == [1.0]


def test_float_labels_equal_integer_labels_and_fractional_or_nan_labels_are_masked():
    # Integer and float labels take different validity paths (floats also need an
    # integrality test); both must give the same losses, and bad float labels are masked.
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], np.float32)
    as_int = SafeSparseCategoricalCrossentropy(reduction=None)(np.array([0, 2, 1]), p)
    as_float = SafeSparseCategoricalCrossentropy(reduction=None)(
        np.array([0.0, 2.0, 1.0], np.float32), p
    )
    assert_matches_reference(as_float, to_numpy(as_int), "exact", "float vs int labels")
    for bad in (1.5, float("nan")):
        loss = SafeSparseCategoricalCrossentropy()
        value = loss(np.array([0.0, bad, 1.0], np.float32), p)
        expected = -np.log(p[[0, 2], [0, 1]].astype(np.float64)).mean()
        assert_matches_reference(value, np.array(expected), "float32")
        assert float(to_numpy(loss.invalid_target_counter.result())) == 1.0


LABELS = [0.0, 1.0, 2.0, -1.0, 3.0, 2.5, -0.0, 1e10, float("nan"), float("inf"), -float("inf")]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(LABELS), min_size=1, max_size=12), st.booleans())
def test_masking_leaves_out_exactly_the_bad_labels(labels, as_int):
    # The count of bad labels must be the number of labels outside [0, 3) or not integers,
    # for float and integer labels alike, and exactly those samples have loss 0.
    labels = np.asarray(labels, np.float64)
    if as_int:
        labels = np.where(np.isfinite(labels) & (np.abs(labels) < 1e9), labels, -5.0)
        labels = np.trunc(labels).astype("int32")
    good = np.isin(labels, [0, 1, 2])
    p = np.full((len(labels), 3), 1 / 3, "float32")
    loss = SafeSparseCategoricalCrossentropy(reduction=None)
    values = to_numpy(loss(labels.astype("float32") if not as_int else labels, p))
    assert_matches_reference(values, np.where(good, np.log(3.0), 0.0), "float32")
    assert float(to_numpy(loss.invalid_target_counter.result())) == (~good).sum()

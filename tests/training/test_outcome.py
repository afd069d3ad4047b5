"""The outcome vocabulary: ok, stalled, exploded, nan, judged against the trivial predictor."""

import math

import keras
import numpy as np
import pytest

from xstable.training import (
    EXPLODED_FACTOR,
    OUTCOMES,
    TrainingSpec,
    classify_outcome,
    run_spec,
    trivial_loss,
)


def test_classify_outcome_on_each_side_of_the_trivial_loss():
    assert OUTCOMES == ("ok", "stalled", "exploded", "nan")
    assert classify_outcome(0.5, 0.69) == "ok"
    assert classify_outcome(0.69, 0.69) == "stalled"  # not below it: nothing learned
    assert classify_outcome(0.69 * EXPLODED_FACTOR, 0.69) == "stalled"
    assert classify_outcome(0.69 * EXPLODED_FACTOR * 1.01, 0.69) == "exploded"
    assert classify_outcome(3e38, 0.69) == "exploded"
    for bad in (math.nan, math.inf, -math.inf):
        assert classify_outcome(bad, 0.69) == "nan"
    assert classify_outcome(0.1, 0.69, finite=False) == "nan"  # a weight went non-finite
    assert classify_outcome(1e9, None) == "ok"  # no trivial loss: learning not judged
    assert classify_outcome(5.0, 1.0, exploded_factor=4.0) == "exploded"


def test_classify_outcome_rejects_bad_references():
    with pytest.raises(ValueError, match="`exploded_factor` must be above 1"):
        classify_outcome(1.0, 1.0, exploded_factor=1.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="`trivial_loss` must be a finite number"):
            classify_outcome(1.0, bad)


def test_trivial_loss_matches_float64_references():
    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 2.0, size=(50, 1))
    np.testing.assert_allclose(trivial_loss("mse", y), np.var(y), rtol=1e-5)
    np.testing.assert_allclose(trivial_loss("mae", y), np.mean(np.abs(y - y.mean())), rtol=1e-5)
    labels = (rng.random((40, 1)) < 0.3).astype("float64")
    p = labels.mean()
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    for loss in (
        "binary_crossentropy",
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.losses.BinaryCrossentropy(),
    ):
        np.testing.assert_allclose(trivial_loss(loss, labels), entropy, rtol=1e-4)
    classes = rng.integers(0, 3, size=60)
    prior = np.bincount(classes) / classes.size
    cross = -np.mean(np.log(prior[classes]))
    for loss in (
        "sparse_categorical_crossentropy",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ):
        np.testing.assert_allclose(trivial_loss(loss, classes), cross, rtol=1e-4)
    one_hot = np.eye(3)[classes]
    np.testing.assert_allclose(
        trivial_loss(keras.losses.CategoricalCrossentropy(from_logits=True), one_hot),
        cross,
        rtol=1e-4,
    )

    def custom(y_true, y_pred):
        return keras.ops.mean(keras.ops.log1p(keras.ops.abs(y_true - y_pred)) ** 2)

    reference = np.mean(np.log1p(np.abs(y - y.mean())) ** 2)
    np.testing.assert_allclose(trivial_loss(custom, y), reference, rtol=1e-5)
    with pytest.raises(ValueError, match="non-empty array of finite targets"):
        trivial_loss("mse", np.array([1.0, np.nan]))


def _spec(learning_rate, scale=1.0, offset=5.0, epochs=3, steps_rows=48):
    """A linear fit whose targets have mean `offset`, so a model at 0 starts above trivial."""

    def make_data():
        rng = np.random.default_rng(0)
        x = (rng.normal(size=(steps_rows, 2)) * scale).astype("float32")
        y = (x @ np.array([[2.0], [-1.0]]) / scale + offset).astype("float32")
        return x, y

    return TrainingSpec(
        "crafted",
        lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
        make_data,
        lambda: {"optimizer": keras.optimizers.SGD(learning_rate), "loss": "mse"},
        epochs=epochs,
        batch_size=16,
    )


def _zero_weights(spec):
    return [np.zeros(w.shape, "float32") for w in spec.build_model().weights]


def test_crafted_runs_get_each_outcome():
    learned = _spec(0.1, epochs=10)
    result = run_spec(learned, initial_weights=_zero_weights(learned))
    assert result.outcome == "ok", (result.final_loss, result.trivial_loss)
    np.testing.assert_allclose(result.trivial_loss, np.var(learned.make_data()[1]), rtol=1e-5)
    assert result.final_loss < result.trivial_loss

    # A learning rate too small to move the output from 0 towards the targets' mean of 5.
    stalled = _spec(1e-6)
    result = run_spec(stalled, initial_weights=_zero_weights(stalled))
    assert result.outcome == "stalled", (result.final_loss, result.trivial_loss)
    assert result.trivial_loss <= result.final_loss <= EXPLODED_FACTOR * result.trivial_loss

    # Each SGD step overshoots by ~10x on inputs of scale 10: finite, far above trivial.
    exploded = _spec(0.05, scale=10.0, epochs=2)
    result = run_spec(exploded, initial_weights=_zero_weights(exploded))
    assert result.outcome == "exploded", (result.final_loss, result.trivial_loss)
    assert math.isfinite(result.final_loss) and result.weights_finite

    nan = _spec(1.0, scale=1e3, epochs=5)
    result = run_spec(nan, initial_weights=_zero_weights(nan))
    assert result.outcome == "nan" and not math.isfinite(result.final_loss)


def test_final_loss_is_the_loss_on_every_training_row():
    spec = _spec(0.1, epochs=2)
    weights = _zero_weights(spec)
    result = run_spec(spec, initial_weights=weights, trivial_loss=None)
    assert result.trivial_loss is None and result.outcome == "ok"
    # 48 rows in batches of 16: the last step's loss is one batch's, the final loss all rows'.
    assert result.final_loss != result.losses[-1]
    explicit = run_spec(spec, initial_weights=weights, trivial_loss=result.final_loss)
    assert explicit.outcome == "stalled" and explicit.trivial_loss == result.final_loss


def test_the_former_diverged_threshold_is_ignored_with_a_warning():
    spec = _spec(0.1)
    with pytest.warns(DeprecationWarning, match="`diverged_threshold` is ignored"):
        result = run_spec(spec, initial_weights=_zero_weights(spec), diverged_threshold=1e-9)
    assert result.outcome == "ok"

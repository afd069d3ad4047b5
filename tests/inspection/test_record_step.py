"""`record_step` records one training step as data; `first_nonfinite` reads it, also after a
round trip through the data-only exchange format (as between compare's processes)."""

import keras
import numpy as np
import pytest

from tests.helpers import assert_matches_reference, to_numpy
from xstable.compare.exchange import tree_from_bytes, tree_to_bytes
from xstable.inspection import StepRecording, first_nonfinite, record_step


def _inner():
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, name="inner_dense")], name="block"
    )


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    hidden = _inner()(inputs)
    normed = keras.layers.BatchNormalization(name="norm")(hidden)
    outputs = keras.layers.Dense(1, name="head")(normed)
    model = keras.Model(inputs, outputs, name="outer")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def _data(rows=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3)).astype("float32")
    return x, rng.normal(size=(rows, 1)).astype("float32")


def _round_trip(recording):
    return StepRecording.from_tree(tree_from_bytes(tree_to_bytes(recording.to_tree())))


def _reference_loss_and_gradients(model, x, y):
    """The loss and weight gradients of one training-mode step, computed directly.

    It may move the batch-normalization statistics (eagerly on TF and torch): call it last.
    """
    from xstable.backend import value_and_gradients

    variables = list(model.trainable_variables)

    def fn():
        prediction = model(x, training=True)
        return model.compute_loss(x=x, y=y, y_pred=prediction, training=True), None

    loss, _, grads = value_and_gradients(fn, variables)
    return float(to_numpy(loss)), [to_numpy(g) for g in grads]


def test_every_layer_call_the_loss_gradients_and_update_are_recorded():
    model = _model()
    x, y = _data()
    before = [to_numpy(v).copy() for v in model.variables]
    recording = record_step(model, x, y, optimizer=model.optimizer, update="always")
    assert [(c.path, c.class_name) for c in recording.calls] == [
        ("outer", "Functional"),
        ("outer/block", "Sequential"),
        ("outer/block/inner_dense", "Dense"),
        ("outer/norm", "BatchNormalization"),
        ("outer/head", "Dense"),
    ]
    assert [c.parent for c in recording.calls] == [None, 0, 1, 0, 0]
    assert [c.name for c in recording.layer_calls()] == ["block", "norm", "head"]
    # Nothing changed: weights, moving statistics, optimizer.
    for variable, value in zip(model.variables, before, strict=True):
        np.testing.assert_array_equal(to_numpy(variable), value)
    assert int(to_numpy(model.optimizer.iterations)) == 0
    assert first_nonfinite(recording) is None
    loss, grads = _reference_loss_and_gradients(model, x, y)
    assert recording.loss == pytest.approx(loss, rel=1e-5)
    trainable = recording.trainable
    assert [v.path for v in trainable] == [v.path for v in model.trainable_variables]
    for record, grad in zip(trainable, grads, strict=True):
        assert_matches_reference(np.asarray(record.gradient), grad, "float32_loose", record.path)
        assert record.owner in ("outer/block/inner_dense", "outer/norm", "outer/head")
        # SGD(0.1): the update is value - 0.1 * gradient.
        expected = np.asarray(record.value) - 0.1 * grad
        assert_matches_reference(np.asarray(record.updated), expected, "float32_loose",
                                 record.path)
    # The head's input gradient is recorded through the probes.
    head = recording.calls[-1]
    assert len(head.input_gradients) == 1 and np.asarray(head.input_gradients[0]).shape == (4, 2)


def test_moving_statistics_the_forward_pass_writes_are_recorded_not_applied():
    model = _model()
    x, y = _data()
    recording = record_step(model, x, y)
    moving_mean = next(v for v in recording.variables if v.path.endswith("moving_mean"))
    assert not moving_mean.trainable and moving_mean.owner == "outer/norm"
    block_output = np.asarray(recording.calls[1].outputs[0])
    # BatchNormalization's default momentum 0.99, from a zero mean.
    expected = 0.01 * block_output.mean(axis=0)
    assert_matches_reference(np.asarray(moving_mean.updated), expected, "float32_loose")
    np.testing.assert_array_equal(to_numpy(model.get_layer("norm").moving_mean), 0.0)


def test_the_loss_scale_scales_the_gradients_only():
    model = _model()
    x, y = _data()
    plain = record_step(model, x, y, probes=False)
    scaled = record_step(model, x, y, probes=False, loss_scale=8.0)
    assert scaled.loss == pytest.approx(plain.loss, rel=1e-6)
    for a, b in zip(plain.trainable, scaled.trainable, strict=True):
        assert_matches_reference(np.asarray(b.gradient), 8.0 * np.asarray(a.gradient),
                                 "float32_loose", a.path)
    # Without probes the layers' gradients are not recorded.
    assert all(c.input_gradients == [] for c in plain.calls)


def test_inference_mode_and_forward_only():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dropout(0.5, name="drop"), keras.layers.Dense(1)]
    )
    x, _ = _data()
    recording = record_step(model, x, training=False)
    np.testing.assert_array_equal(np.asarray(recording.calls[1].outputs[0]), x)
    assert recording.loss is None and all(v.gradient is None for v in recording.variables)
    assert first_nonfinite(recording) is None


def test_a_location_reads_the_same_after_a_round_trip_through_data():
    model = _model()
    x, y = _data()
    kernel = model.get_layer("head").kernel
    kernel.assign(np.full(tuple(kernel.shape), 1e30, "float32"))  # squares overflow in the loss
    recording = record_step(model, x, y)
    location = first_nonfinite(recording)
    assert (location.stage, location.tensor) == ("loss", "loss")
    back = _round_trip(recording)
    assert first_nonfinite(back) == location
    np.testing.assert_array_equal(np.asarray(back.calls[2].outputs[0]),
                                  np.asarray(recording.calls[2].outputs[0]))
    value = to_numpy(kernel).copy()
    value[0, 0] = np.nan
    kernel.assign(value)
    location = first_nonfinite(_round_trip(record_step(model, x, y)))
    assert (location.stage, location.layer_path, location.tensor) == (
        "forward", "outer/head", "weight"
    )


def test_the_update_is_recorded_only_where_it_is_looked_at():
    model = _model()
    x, y = _data()
    y_bad = y.copy()
    model.get_layer("head").kernel.assign(np.full((2, 1), 1e30, "float32"))
    skipped = record_step(model, x, y_bad, optimizer=model.optimizer)
    assert skipped.optimizer is None and all(v.updated is None for v in skipped.trainable)
    forced = record_step(model, x, y_bad, optimizer=model.optimizer, update="always")
    assert forced.optimizer == "SGD" and all(v.updated is not None for v in forced.trainable)
    with pytest.raises(ValueError, match="`update`.*Received: update='sometimes'"):
        record_step(model, x, y, update="sometimes")

"""A safe loss is a drop-in for its Keras twin: same returns, same values on healthy data,
one behaviour on every backend and in every execution mode."""

import keras
import numpy as np
import pytest

import xstable
from tests.helpers import assert_matches_reference, to_numpy
from tests.losses._compiled import MODES, value_and_grad_in, value_in
from xstable.losses import (
    SafeBinaryCrossentropy,
    SafeCategoricalCrossentropy,
    SafeLoss,
    SafeSparseCategoricalCrossentropy,
    safe_binary_crossentropy,
    safe_categorical_crossentropy,
    safe_sparse_categorical_crossentropy,
)

_RNG = np.random.default_rng(7)
_X = _RNG.normal(size=(32, 4)).astype("float32")
_BINARY = (_X[:, :1] > 0).astype("float32")
_LABELS = (np.abs(_X[:, 0]) * 2).astype("int32") % 3
_ONE_HOT = np.eye(3, dtype="float32")[_LABELS]

# (Keras loss, safe twin, output activation, units, targets)
TWINS = {
    "binary": (
        lambda: keras.losses.BinaryCrossentropy(),
        lambda: SafeBinaryCrossentropy(),
        "sigmoid",
        1,
        _BINARY,
    ),
    "categorical": (
        lambda: keras.losses.CategoricalCrossentropy(),
        lambda: SafeCategoricalCrossentropy(),
        "softmax",
        3,
        _ONE_HOT,
    ),
    "sparse": (
        lambda: keras.losses.SparseCategoricalCrossentropy(),
        lambda: SafeSparseCategoricalCrossentropy(),
        "softmax",
        3,
        _LABELS,
    ),
    "mse": (lambda: keras.losses.MeanSquaredError(), lambda: SafeLoss("mse"), None, 1, _BINARY),
}


def _model(activation, units):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation=activation)])
    rng = np.random.default_rng(11)
    model.set_weights(
        [rng.normal(0, 0.5, (4, units)).astype("float32"), np.zeros(units, "float32")]
    )
    return model


@pytest.mark.parametrize("kind", sorted(TWINS))
def test_evaluate_fit_and_history_return_what_the_keras_twin_returns(kind):
    make_keras, make_safe, activation, units, y = TWINS[kind]
    results = {}
    for name, make in (("keras", make_keras), ("safe", make_safe)):
        model = _model(activation, units)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=make())
        evaluated = model.evaluate(_X, y, verbose=0)
        history = model.fit(_X, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
        results[name] = (evaluated, history.history)
    (keras_eval, keras_history), (safe_eval, safe_history) = results["keras"], results["safe"]
    assert isinstance(safe_eval, float) and isinstance(keras_eval, float), (keras_eval, safe_eval)
    assert_matches_reference(safe_eval, keras_eval, "float32_loose", what="evaluate")
    assert sorted(safe_history) == sorted(keras_history) == ["loss"], (safe_history, keras_history)
    assert_matches_reference(
        safe_history["loss"], keras_history["loss"], "float32_loose", what="History loss"
    )


@pytest.mark.parametrize("kind", sorted(TWINS))
def test_listed_counters_show_in_evaluate_and_history(kind):
    _, make_safe, activation, units, y = TWINS[kind]
    y = y.astype("float32").copy()
    y[5] = np.nan  # invalid target (or non-finite loss for SafeLoss): counted
    loss = make_safe()
    model = _model(activation, units)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, metrics=loss.counters)
    key = loss.counters[0].name
    loss_value, count = model.evaluate(_X, y, verbose=0)
    assert count == 1.0 and np.isfinite(loss_value), (loss_value, count)
    history = model.fit(_X, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    assert history.history[key] == [1.0, 1.0], history.history
    assert np.isfinite(history.history["loss"]).all(), history.history


def test_counters_stay_in_history_after_diagnose():
    loss = SafeBinaryCrossentropy()
    model = _model("sigmoid", 1)
    model.compile(optimizer="sgd", loss=loss, metrics=loss.counters)
    y = _BINARY.copy()
    y[0] = 2.0
    xstable.diagnose(model, _X, y)
    history = model.fit(_X, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    assert history.history["safe_binary_crossentropy_invalid_targets"] == [1.0, 1.0]


# Invalid targets: one policy, the same in eager and compiled code on every backend.

_INVALID_CASES = {
    "binary": (
        lambda policy: SafeBinaryCrossentropy(invalid_targets=policy),
        np.array([[0.0], [2.0], [1.0], [np.nan]], "float32"),
        np.array([[0.2], [0.5], [0.7], [0.5]], "float32"),
        [False, True, False, True],
    ),
    "categorical": (
        lambda policy: SafeCategoricalCrossentropy(invalid_targets=policy),
        np.array([[1, 0], [0, 1.5], [0, 1], [-1, 0]], "float32"),
        np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8], [0.5, 0.5]], "float32"),
        [False, True, False, True],
    ),
    "sparse": (
        lambda policy: SafeSparseCategoricalCrossentropy(invalid_targets=policy),
        np.array([0, 7, 1, -1], "int32"),
        np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8], [0.5, 0.5]], "float32"),
        [False, True, False, True],
    ),
}


def _healthy_values(kind, y, p, valid):
    make = {
        "binary": keras.losses.binary_crossentropy,
        "categorical": keras.losses.categorical_crossentropy,
        "sparse": keras.losses.sparse_categorical_crossentropy,
    }[kind]
    valid = np.asarray(valid)
    return to_numpy(make(y[valid], p[valid]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(_INVALID_CASES))
def test_invalid_targets_are_masked_and_counted_alike_eager_and_compiled(kind, mode):
    make, y, p, invalid = _INVALID_CASES[kind]
    valid = ~np.asarray(invalid)
    expected = _healthy_values(kind, y, p, valid)
    loss = make("mask")
    value, grad = value_and_grad_in(mode, lambda t: loss(y, t), p)
    assert_matches_reference(value, np.array(expected.mean()), "float32", what=f"{mode} loss")
    assert np.isfinite(grad).all() and (grad[~valid] == 0).all(), grad
    per_sample_loss = make("mask").__class__(reduction=None)
    per_sample = value_in(mode, lambda t: per_sample_loss(y, t), p)
    assert (per_sample[~valid] == 0).all(), per_sample
    # A batch whose targets are all invalid has no loss: NaN, and a NaN gradient, so that a
    # GuardedOptimizer skips the step (and StabilityMonitor sees a NaN loss).
    value, grad = value_and_grad_in(mode, lambda t: loss(y[~valid], t), p[~valid])
    assert np.isnan(value) and np.isnan(grad).all(), (value, grad)
    # With a sum there is nothing to average: 0.0, gradient 0.
    total = make("mask").__class__(reduction="sum")
    value, grad = value_and_grad_in(mode, lambda t: total(y[~valid], t), p[~valid])
    assert float(value) == 0.0 and (grad == 0).all(), (value, grad)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(_INVALID_CASES))
def test_invalid_targets_nan_policy_is_nan_alike_eager_and_compiled(kind, mode):
    make, y, p, invalid = _INVALID_CASES[kind]
    per_sample_loss = make("nan").__class__(invalid_targets="nan", reduction=None)
    per_sample = value_in(mode, lambda t: per_sample_loss(y, t), p)
    assert np.isnan(per_sample[np.asarray(invalid)]).all(), per_sample
    assert np.isfinite(per_sample[~np.asarray(invalid)]).all(), per_sample
    loss = make("nan")
    assert np.isnan(value_in(mode, lambda t: loss(y, t), p))
    function = {
        "binary": safe_binary_crossentropy,
        "categorical": safe_categorical_crossentropy,
        "sparse": safe_sparse_categorical_crossentropy,
    }[kind]
    out = value_in(mode, lambda t: function(y, t), p)
    assert np.isnan(out[np.asarray(invalid)]).all() and np.isfinite(out[~np.asarray(invalid)]).all()


@pytest.mark.parametrize("run_eagerly", [False, True], ids=["compiled-fit", "eager-fit"])
def test_fit_with_an_invalid_target_is_the_same_compiled_and_eager(run_eagerly):
    y = _BINARY.copy()
    y[3] = 2.0
    loss = SafeBinaryCrossentropy()
    model = _model("sigmoid", 1)
    model.compile(optimizer="sgd", loss=loss, metrics=loss.counters, run_eagerly=run_eagerly)
    history = model.fit(_X, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    reference = _model("sigmoid", 1)
    reference.compile(optimizer="sgd", loss=keras.losses.BinaryCrossentropy())
    keep = np.arange(len(y)) != 3
    # Keras on the 31 valid samples, in the same batches (the batch with the bad one has 7).
    losses = []
    for start in range(0, 32, 8):
        rows = [i for i in range(start, start + 8) if keep[i]]
        losses.append(reference.train_on_batch(_X[rows], _BINARY[rows]))
    assert history.history["safe_binary_crossentropy_invalid_targets"] == [1.0]
    assert_matches_reference(
        history.history["loss"][0], np.mean(losses), "float32_loose", what="epoch loss"
    )


@pytest.mark.parametrize("run_eagerly", [False, True], ids=["compiled-fit", "eager-fit"])
def test_one_hot_labels_to_the_sparse_loss_raise_a_shape_error_everywhere(run_eagerly):
    loss = SafeSparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match=r"`y_true` must hold one integer class label"):
        loss(_ONE_HOT, np.full((32, 3), 1 / 3, "float32"))
    model = _model("softmax", 3)
    model.compile(optimizer="sgd", loss=loss, run_eagerly=run_eagerly)
    with pytest.raises(ValueError, match=r"one integer class label.*y_true.shape=\(.*, 3\)"):
        model.fit(_X, _ONE_HOT, epochs=1, batch_size=8, verbose=0)


_CLASSES = [SafeBinaryCrossentropy, SafeCategoricalCrossentropy, SafeSparseCategoricalCrossentropy]
_FUNCTIONS = [
    safe_binary_crossentropy,
    safe_categorical_crossentropy,
    safe_sparse_categorical_crossentropy,
]


@pytest.mark.parametrize("cls", _CLASSES, ids=lambda c: c.__name__)
def test_bad_constructor_arguments_raise_naming_the_argument(cls):
    message = r"`from_logits` must be a bool.*Received: from_logits='False'"
    with pytest.raises(TypeError, match=message):
        cls(from_logits="False")
    with pytest.raises(TypeError, match=r"`from_logits`.*Received: from_logits=1"):
        cls(from_logits=1)
    with pytest.raises(ValueError, match=r"`invalid_targets`.*Received: invalid_targets='raise'"):
        cls(invalid_targets="raise")
    with pytest.raises(TypeError, match=r"`axis`.*Received: axis=1\.0"):
        cls(axis=1.0)
    with pytest.raises(TypeError, match=r"`name`.*Received: name=3"):
        cls(name=3)
    with pytest.raises(ValueError, match=r"`reduction`.*Received: reduction='avg'"):
        cls(reduction="avg")
    if cls is SafeSparseCategoricalCrossentropy:
        with pytest.raises(TypeError, match=r"`ignore_class`.*Received: ignore_class=1\.5"):
            cls(ignore_class=1.5)
    else:
        with pytest.raises(TypeError, match=r"`label_smoothing`.*Received: label_smoothing='0'"):
            cls(label_smoothing="0")
        with pytest.raises(ValueError, match=r"`label_smoothing`.*Received: label_smoothing=-0\.1"):
            cls(label_smoothing=-0.1)


@pytest.mark.parametrize("function", _FUNCTIONS, ids=lambda f: f.__name__)
def test_bad_function_arguments_raise_naming_the_argument(function):
    y, p = np.array([0], "int32"), np.array([[0.5, 0.5]], "float32")
    with pytest.raises(TypeError, match=r"`from_logits`.*Received: from_logits='False'"):
        function(y, p, from_logits="False")
    with pytest.raises(TypeError, match=r"`axis`.*Received: axis='x'"):
        function(y, p, axis="x")


def test_safe_loss_rejects_a_non_string_name():
    with pytest.raises(TypeError, match=r"`name`.*Received: name=3"):
        SafeLoss("mse", name=3)


# Healthy data: Keras's own values for every option Keras documents.


def _parity_cases():
    rng = np.random.default_rng(5)
    p2 = rng.uniform(0.05, 0.95, (6, 2)).astype("float32")
    y2 = (rng.random((6, 2)) > 0.5).astype("float32")
    z3 = rng.normal(0, 2, (6, 3)).astype("float32")
    p3 = (np.exp(z3) / np.exp(z3).sum(-1, keepdims=True)).astype("float32")
    labels = rng.integers(0, 3, 6).astype("int32")
    labels[2] = 1
    y3 = np.eye(3, dtype="float32")[labels]
    w = rng.uniform(0.1, 2.0, 6).astype("float32")
    cases = []
    for reduction in ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None]:
        for weight in (None, w):
            cases.append(("BinaryCrossentropy", dict(reduction=reduction), y2, p2, weight))
            cases.append(("CategoricalCrossentropy", dict(reduction=reduction), y3, p3, weight))
            cases.append(
                ("SparseCategoricalCrossentropy", dict(reduction=reduction), labels, p3, weight)
            )
    cases += [
        ("BinaryCrossentropy", dict(label_smoothing=0.2), y2, p2, None),
        ("BinaryCrossentropy", dict(from_logits=True, label_smoothing=0.1), y2, z3[:, :2], w),
        ("BinaryCrossentropy", dict(axis=0), y2, p2, None),
        ("CategoricalCrossentropy", dict(label_smoothing=0.3), y3, p3, w),
        ("CategoricalCrossentropy", dict(from_logits=True), y3, z3, None),
        ("CategoricalCrossentropy", dict(axis=0), y3.T.copy(), p3.T.copy(), None),
        ("SparseCategoricalCrossentropy", dict(from_logits=True), labels, z3, w),
        ("SparseCategoricalCrossentropy", dict(ignore_class=1), labels, p3, None),
        ("SparseCategoricalCrossentropy", dict(ignore_class=1, from_logits=True), labels, z3, w),
        ("BinaryCrossentropy", dict(dtype="float64"), y2, p2.astype("float64"), None),
        ("CategoricalCrossentropy", dict(dtype="float64"), y3, p3.astype("float64"), w),
    ]
    return cases


@pytest.mark.parametrize("case", _parity_cases(), ids=lambda c: f"{c[0]}-{c[1]}-{c[4] is not None}")
def test_healthy_data_gives_keras_values(case):
    name, options, y, p, weight = case
    ours = getattr(xstable.losses, f"Safe{name}")(**options)(y, p, weight)
    theirs = getattr(keras.losses, name)(**options)(y, p, weight)
    # TF's Keras adds epsilon inside the log of a probability; JAX and torch do not.
    tolerance = (2e-6, 1e-7) if "dtype" not in options else (1e-6, 1e-12)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    if "dtype" not in options:  # Keras 3.15 returns float32 for a float64 loss; ours float64
        assert keras.backend.standardize_dtype(ours.dtype) == keras.backend.standardize_dtype(
            theirs.dtype
        )
    assert_matches_reference(to_numpy(ours), to_numpy(theirs), tolerance, what=str(options))


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_of_ignored_classes_is_zero_as_in_keras_but_invalid_ones_are_nan(mode):
    # `ignore_class` leaves samples out on purpose: Keras's 0.0 for a batch of them.
    p = np.array([[0.7, 0.3], [0.5, 0.5]], "float32")
    loss = SafeSparseCategoricalCrossentropy(ignore_class=0)
    value, grad = value_and_grad_in(mode, lambda t: loss(np.array([0, 0], "int32"), t), p)
    keras_value = keras.losses.SparseCategoricalCrossentropy(ignore_class=0)(
        np.array([0, 0], "int32"), p
    )
    assert float(value) == float(to_numpy(keras_value)) == 0.0 and (grad == 0).all()
    # One ignored, one invalid, none valid: the batch's loss is undefined.
    value, grad = value_and_grad_in(mode, lambda t: loss(np.array([0, 7], "int32"), t), p)
    assert np.isnan(value) and np.isnan(grad).all(), (value, grad)


@pytest.mark.parametrize("mode", MODES)
def test_safe_loss_of_a_batch_of_nonfinite_samples_is_nan_alike_eager_and_compiled(mode):
    y = np.zeros((3, 1), "float32")
    loss = SafeLoss("mse")
    nan_rows = np.full((3, 1), np.nan, "float32")
    value, grad = value_and_grad_in(mode, lambda t: loss(y, t), nan_rows)
    assert np.isnan(value) and np.isnan(grad).all(), (value, grad)
    one_nan = np.array([[1.0], [np.nan], [2.0]], "float32")
    value, grad = value_and_grad_in(mode, lambda t: loss(y, t), one_nan)
    assert_matches_reference(value, np.array(2.5), "float32", what=f"{mode} masked mean")
    assert np.isfinite(grad).all() and grad[1] == 0, grad

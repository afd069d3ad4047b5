"""diagnose(): model/compile checks, clear errors for bad input, the report object."""

import json

import keras
import numpy as np
import pytest

from xstable.diagnosis.diagnose import diagnose
from xstable.diagnosis.findings import DiagnosisReport, Finding


def _data(rows=64, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = (x @ rng.normal(size=(features, 1))).astype("float32")
    return x, y


def _linear(features=3, optimizer="adam", loss="mse", activation=None, dtype=None):
    model = keras.Sequential(
        [keras.Input((features,)), keras.layers.Dense(1, activation=activation, dtype=dtype)]
    )
    model.compile(optimizer=optimizer, loss=loss)
    return model


def _quick(model, x, y, **kwargs):
    return diagnose(model, x, y, training_step=False, **kwargs)


# ---------------------------------------------------------------- bad input


def test_rejects_a_non_keras_model():
    x, y = _data()
    with pytest.raises(
        TypeError, match=r"`model` must be a `keras.Model`.*Received: model of type"
    ):
        diagnose(lambda v: v, x, y)


def test_rejects_an_uncompiled_model():
    x, y = _data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"must be compiled.*model.compile"):
        diagnose(model, x, y)


def test_rejects_x_and_y_of_different_lengths():
    x, y = _data()
    with pytest.raises(ValueError, match=r"same number of rows.*'x': 64, 'y': 63"):
        diagnose(_linear(), x, y[:-1])


def test_rejects_nan_only_data():
    x, y = _data()
    with pytest.raises(ValueError, match=r"`x` holds no finite value at all"):
        diagnose(_linear(), np.full_like(x, np.nan), y)
    with pytest.raises(ValueError, match=r"`y` holds no finite value at all"):
        diagnose(_linear(), x, np.full_like(y, np.inf))


def test_rejects_non_numeric_data_and_missing_targets():
    x, y = _data()
    with pytest.raises(TypeError, match=r"`x` must hold numbers.*dtype <U"):
        diagnose(_linear(), np.array([["a", "b", "c"]] * 64), y)
    with pytest.raises(ValueError, match=r"`x` and `y` are both required"):
        diagnose(_linear(), x, None)


# ---------------------------------------------------------------- model checks


def test_float16_without_loss_scaling_and_with_it():
    x, y = _data()
    report = _quick(_linear(dtype="mixed_float16"), x, y)
    finding = report.by_code("float16-without-loss-scaling")[0]
    assert finding.evidence["compute_dtypes"] == ["float16"]
    assert finding.fix == "keras.optimizers.LossScaleOptimizer"
    scaled = _linear(
        dtype="mixed_float16",
        optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()),
    )
    assert "float16-without-loss-scaling" not in _quick(scaled, x, y).codes
    assert "float16-without-loss-scaling" not in _quick(_linear(), x, y).codes


def test_float16_inputs_beyond_65504_overflow():
    x, y = _data()
    x[4, 2] = 1e5
    finding = _quick(_linear(dtype="mixed_float16"), x, y).by_code("float16-input-overflow")[0]
    assert finding.severity == "error" and finding.evidence["input_abs_max"] == 1e5


def test_sparse_labels_outside_the_number_of_classes():
    x, _ = _data()
    labels = np.arange(64) % 3
    labels[[5, 9]] = [3, -1]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    finding = _quick(model, x, labels).by_code("sparse-label-out-of-range")[0]
    assert finding.evidence["num_classes"] == 3
    assert finding.evidence["first_rows"] == [5, 9]
    assert finding.evidence["too_large"] == 1 and finding.evidence["negative"] == 1


def test_regression_targets_outside_a_sigmoid_output():
    x, _ = _data()
    y = np.linspace(0, 5, 64).reshape(-1, 1)
    finding = _quick(_linear(activation="sigmoid"), x, y).by_code("target-out-of-range")[0]
    assert finding.evidence["allowed_low"] == 0.0 and finding.evidence["allowed_high"] == 1.0
    assert finding.evidence["values_outside"] == int((y > 1).sum())


def test_binary_crossentropy_targets_outside_0_1_even_with_logits():
    x, _ = _data()
    y = np.where(np.arange(64) % 2 == 0, 0.0, 2.0).reshape(-1, 1)
    model = _linear(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    finding = _quick(model, x, y).by_code("target-out-of-range")[0]
    assert "BinaryCrossentropy" in finding.evidence["loss"]


def test_infinite_target_is_an_error_and_located_in_the_training_step():
    x, y = _data()
    y[12, 0] = np.inf
    report = diagnose(_linear(), x, y)
    assert report.by_code("nonfinite-target")[0].evidence["posinf"] == 1
    step = report.by_code("nonfinite-training-step")[0]
    assert step.evidence["stage"] == "target"
    assert step.evidence["data_rows"] == [12]


def test_subclassed_model_is_diagnosed_without_probing_layers():
    class TwoLayer(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="tanh")
            self.out = keras.layers.Dense(1)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    x, y = _data()
    model = TwoLayer()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=5.0), loss="mse")
    report = _quick(model, x * 100, y)
    assert "learning-rate-too-large" in report.codes
    assert any("not probed" in note for note in report.summary["notes"])


# ---------------------------------------------------------------- report object


def test_report_orders_by_severity_and_serializes_non_finite_numbers():
    findings = [
        Finding("b", "info", "t", {"v": float("nan")}, "fix", "ex"),
        Finding("a", "error", "t", {"v": np.float32(np.inf), "rows": np.array([1, 2])}, "f", "e"),
    ]
    report = DiagnosisReport(findings, {"model": "m", "backend": "jax"}, {"ran": False, "why": "x"})
    assert report.codes == ["a", "b"]
    data = report.to_dict()
    assert data["counts"] == {"error": 1, "warning": 0, "info": 1}
    assert data["findings"][0]["evidence"] == {"v": "inf", "rows": [1, 2]}
    assert data["findings"][1]["evidence"] == {"v": "nan"}
    json.dumps(data, allow_nan=False)
    assert not report.ok and len(report) == 2
    assert "[ERROR] a: t" in str(report) and "Instrumented training step not run: x" in str(report)


def test_finding_rejects_an_unknown_severity():
    with pytest.raises(ValueError, match=r"`severity` must be one of.*Received: severity='fatal'"):
        Finding("a", "fatal", "t", {}, "f", "e")


def test_default_adam_on_a_wide_layer_is_not_flagged():
    # Wide layers have small initial weights (Glorot: ~0.02 here); Adam's default 1e-3 is fine.
    x = np.random.default_rng(0).normal(size=(32, 1024)).astype("float32")
    model = keras.Sequential(
        [keras.Input((1024,)), keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    assert "learning-rate-too-large" not in _quick(model, x, x[:, :1]).codes

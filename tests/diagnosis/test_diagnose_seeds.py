"""Each seed document's failure cause gets the right diagnose() finding, on every backend.

The data and models follow the documents in /work/shared/seeds (ported to Keras 3; sizes as in
the documents). Keras 3 rejects integer learning rates, hence `Adam(learning_rate=10.0)`.
"""

import json

import keras
import numpy as np

from xstable.diagnosis.diagnose import diagnose as _full_diagnose


def diagnose(model, x, y):
    # The instrumented training step (locate_nonfinite) has its own tests; skipping it here
    # keeps each seed test to the data and model checks it is about.
    return _full_diagnose(model, x, y, training_step=False)


def _rng():
    return np.random.default_rng(0)


def _severity(report, code):
    found = report.by_code(code)
    assert found, f"expected a `{code}` finding; got {report.codes}\n{report}"
    return found[0]


def _dense_regressor(features, hidden=10, optimizer="adam"):
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_doc000_ex1_single_outlier_is_an_input_outlier():
    rng = _rng()
    x = rng.random((100, 1)) * 10
    y = 2 * x + 1 + rng.normal(size=(100, 1))
    x[0, 0] = 1e10
    report = diagnose(_dense_regressor(1, optimizer=keras.optimizers.Adam(0.001)), x, y)
    finding = _severity(report, "input-outlier")
    assert finding.severity == "error"  # a billion robust deviations: a data error
    assert finding.evidence["worst_row"] == 0 and finding.evidence["worst_value"] == 1e10
    assert finding.evidence["rows_affected"] == 1
    # Robust z against a float64 NumPy reference: |x - median| / (1.4826 * MAD).
    median = np.median(x[:, 0])
    mad = np.median(np.abs(x[:, 0] - median))
    np.testing.assert_allclose(
        finding.evidence["worst_robust_z"], (1e10 - median) / (1.4826 * mad), rtol=1e-12
    )
    assert finding.fix == "xstable.layers.AutoScale"


def test_doc000_ex2_features_at_1_and_1000_differ_in_scale():
    rng = _rng()
    x = np.concatenate((rng.random((100, 1)), rng.random((100, 1)) * 1000), axis=1)
    y = x[:, 0] + x[:, 1] + rng.normal(size=100)
    report = diagnose(_dense_regressor(2), x, y)
    finding = _severity(report, "feature-scale-spread")
    assert finding.evidence["largest_feature"] == 1 and finding.evidence["smallest_feature"] == 0
    expected = np.percentile(x[:, 1], 95) / np.percentile(x[:, 0], 95)
    np.testing.assert_allclose(finding.evidence["ratio"], expected, rtol=1e-12)
    assert "input-outlier" not in report.codes


def test_doc001_ex1_features_at_1_and_1e6_differ_by_six_orders():
    x = np.array([[1, 1000000], [2, 2000000], [3, 3000000]], dtype="float64")
    y = np.array([10, 20, 30], dtype="float64")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    finding = _severity(diagnose(model, x, y), "feature-scale-spread")
    assert 5.9 < finding.evidence["orders_of_magnitude"] < 6.1


def test_doc000_ex3_adam_learning_rate_10_is_too_large():
    rng = _rng()
    x = rng.random((100, 1))
    y = 2 * x + 1 + rng.normal(size=(100, 1))
    report = diagnose(
        _dense_regressor(1, optimizer=keras.optimizers.Adam(learning_rate=10.0)), x, y
    )
    finding = _severity(report, "learning-rate-too-large")
    assert finding.severity == "error"
    assert finding.evidence["learning_rate"] == 10.0
    assert finding.evidence["ratio"] > 1
    assert finding.fix == "xstable.optimizers.GuardedOptimizer"
    # The document's fix (learning_rate=0.01) clears it.
    fixed = diagnose(_dense_regressor(1, optimizer=keras.optimizers.Adam(0.01)), x, y)
    assert "learning-rate-too-large" not in fixed.codes


def test_doc001_ex3_plain_sgd_on_unscaled_data_exceeds_the_stability_limit():
    x = np.array([[1, 10], [2, 20], [3, 30], [4, 1000000]], dtype="float64")
    y = np.array([10, 20, 30, 40], dtype="float64")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    finding = _severity(diagnose(model, x, y), "sgd-step-too-large")
    lambda_max = np.linalg.eigvalsh(x.T @ x / 4)[-1]
    np.testing.assert_allclose(finding.evidence["lambda_max_xtx_over_n"], lambda_max, rtol=1e-9)
    np.testing.assert_allclose(
        finding.evidence["learning_rate_times_lambda"], 0.01 * lambda_max, rtol=1e-6
    )
    assert finding.severity == "error"
    # The document's fix (RobustScaler) brings the step under the limit.
    median = np.median(x, axis=0)
    iqr = np.subtract(*np.percentile(x, [75, 25], axis=0))
    scaled = diagnose(model, (x - median) / iqr, y)
    assert "sgd-step-too-large" not in scaled.codes


def test_doc002_ex2_saturated_sigmoid_with_binary_crossentropy():
    rng = _rng()
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(10, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.layers[-1].bias.assign([10.0])
    x = rng.random((100, 10))
    y = rng.integers(0, 2, 100)
    finding = _severity(diagnose(model, x, y), "probability-output-crossentropy")
    assert finding.evidence["fraction_within_1e-4_of_0_or_1"] > 0.5
    assert finding.fix == "keras.losses.BinaryCrossentropy(from_logits=True)"
    # The same model trained on logits (its recommended fix) is not flagged.
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    assert "probability-output-crossentropy" not in diagnose(model, x, y).codes


def test_doc002_ex1_sigmoid_layers_fed_inputs_of_1000_saturate():
    rng = _rng()
    x = rng.random((100, 10)) * 1000
    y = rng.integers(0, 2, 100)
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(100, activation="sigmoid"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    finding = _severity(diagnose(model, x, y), "saturated-activation")
    fraction = finding.evidence["saturated_fraction_by_layer"][model.layers[0].name]
    assert fraction > 0.9
    # Reference: the same forward pass in float64 NumPy.
    kernel, bias = (
        np.asarray(keras.ops.convert_to_numpy(v.value), "float64") for v in model.layers[0].weights
    )
    with np.errstate(over="ignore"):  # exp overflow is the saturation being measured
        hidden = 1 / (1 + np.exp(-(x @ kernel + bias)))
    expected = np.mean((hidden <= 1e-4) | (hidden >= 1 - 1e-4))
    np.testing.assert_allclose(fraction, expected, atol=0.01)


def test_doc003_ex1_tanh_with_inputs_of_100_saturates():
    rng = _rng()
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(128, activation="tanh"),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    x = rng.random((100, 10)) * 100
    y = rng.random((100, 1))
    report = diagnose(model, x, y)
    finding = _severity(report, "saturated-activation")
    assert finding.evidence["activation_by_layer"][model.layers[0].name] == "tanh"
    assert finding.evidence["saturated_fraction_by_layer"][model.layers[0].name] > 0.5
    # Scaled inputs (the document's normalisation) do not saturate.
    assert "saturated-activation" not in diagnose(model, x / 100, y).codes


def test_doc002_ex3_custom_log_loss_is_named_and_probed():
    rng = _rng()

    def custom_loss(y_true, y_pred):
        return keras.ops.mean(keras.ops.log(1 + keras.ops.abs(y_true - y_pred)) ** 2)

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10), keras.layers.Dense(1)])
    model.compile(optimizer="rmsprop", loss=custom_loss)
    report = diagnose(model, rng.random((100, 10)), rng.random((100, 1)))
    finding = _severity(report, "custom-loss")
    # This loss is finite where losses usually break: said so, at info level.
    assert finding.severity == "info"
    assert finding.evidence["nonfinite_or_failing_probes"] == {}
    assert finding.fix == "xstable.losses.SafeLoss"


def test_hand_written_log_loss_that_hits_log_0_is_an_error():
    rng = _rng()

    def naive_log_loss(y_true, y_pred):
        return -keras.ops.mean(
            y_true * keras.ops.log(y_pred) + (1 - y_true) * keras.ops.log(1 - y_pred)
        )

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss=naive_log_loss)
    y = rng.integers(0, 2, (64, 1)).astype("float32")
    finding = _severity(diagnose(model, rng.normal(size=(64, 4)), y), "custom-loss")
    assert finding.severity == "error"
    assert "y_pred = y_true" in finding.evidence["nonfinite_or_failing_probes"]


def test_clean_problem_gets_no_warnings_and_a_finite_training_step():
    rng = _rng()
    x = rng.normal(size=(128, 4))
    y = x @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * rng.normal(size=(128, 1))
    report = _full_diagnose(_dense_regressor(4, optimizer=keras.optimizers.Adam(1e-3)), x, y)
    assert report.ok, str(report)
    assert report.training_step["ran"] and report.training_step["finite"]
    json.dumps(report.to_dict())  # machine-readable as is


def test_nan_row_is_found_by_the_data_check_and_by_the_training_step():
    rng = _rng()
    x = rng.random((100, 1)) * 10
    x[70, 0] = np.nan
    report = _full_diagnose(_dense_regressor(1), x, rng.random((100, 1)))
    data_finding = _severity(report, "nonfinite-input")
    assert data_finding.evidence["first_rows"] == [70] and data_finding.evidence["nan"] == 1
    # The training step's batch starts with the flagged rows, so it meets the NaN too.
    step_finding = _severity(report, "nonfinite-training-step")
    assert step_finding.evidence["stage"] == "input"
    assert step_finding.evidence["data_rows"] == [70]
    assert report.training_step["rows"][0] == 70
    text = str(report)
    assert "[ERROR] nonfinite-input" in text and "fix:" in text and "example:" in text
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["counts"]["error"] >= 1
    assert data["findings"][0]["severity"] == "error"

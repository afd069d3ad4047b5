"""Saved-model targets, prediction parity and statistical comparison of stochastic models.

Units that run on every backend: nothing here spawns a worker (the end-to-end runs are in
test_migration_e2e.py, in the JAX session).
"""

import argparse
import json
import math

import keras
import numpy as np
import pytest

from tests.compare import migration_specs
from xstable.compare import DEFAULT_TOLERANCES, compare, validate_report
from xstable.compare.cli import add_compare_parser, run_compare
from xstable.compare.divergence import prediction_parity, run_statistic, stochastic_comparison
from xstable.compare.inspection import prediction_record
from xstable.compare.report import render_html, render_markdown, target_findings
from xstable.compare.targets import (
    SavedModelOptions,
    check_target_resolvable,
    initial_weights_for,
    is_saved_model_target,
    load_data_file,
    load_spec,
)
from xstable.compare.worker import stochastic_layers


@pytest.fixture
def saved(tmp_path):
    """A compiled functional model saved as .keras, and its data with and without `y`."""
    model = migration_specs.functional_model()
    path = tmp_path / "model.keras"
    model.save(path)
    migration_specs.save_regression_data(tmp_path / "data.npz")
    migration_specs.save_regression_data(tmp_path / "x_only.npz", with_y=False)
    return model, path, tmp_path


def test_saved_model_target_is_recognised():
    assert is_saved_model_target("models/m.keras")
    assert not is_saved_model_target("pkg.mod:fn")
    assert not is_saved_model_target("linear_fit.unscaled/failure")


@pytest.mark.parametrize("make", ["functional_model", "sequential_model", "subclassed_model"])
def test_saved_model_spec_uses_file_weights_and_compile_config(tmp_path, make):
    model = getattr(migration_specs, make)()
    path = tmp_path / "m.keras"
    model.save(path)
    migration_specs.save_regression_data(tmp_path / "d.npz")
    spec = load_spec(str(path), SavedModelOptions(data=str(tmp_path / "d.npz"), epochs=2,
                                                  batch_size=16))
    assert (spec.name, spec.epochs, spec.batch_size) == ("m", 2, 16)
    weights = initial_weights_for(str(path), spec)
    for saved, loaded in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(saved, loaded)
    args = spec.make_compile_args()
    assert type(args["optimizer"]) is type(model.optimizer)
    assert args["loss"] == "mse"
    assert not {"jit_compile", "run_eagerly", "steps_per_execution"} & set(args)
    x, y = spec.make_data()
    assert x.shape == (64, 8) and y.shape == (64, 1)


def test_uncompiled_saved_model_cannot_train(tmp_path):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.save(tmp_path / "bare.keras")
    spec = load_spec(str(tmp_path / "bare.keras"), SavedModelOptions(data=None))
    with pytest.raises(ValueError, match="was not compiled.*--mode predict"):
        spec.make_compile_args()


def test_data_file_is_read_without_pickle(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_data_file(str(tmp_path / "objects.npz"))
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"must hold the arrays \['y'\]"):
        load_data_file(str(tmp_path / "x.npz"))
    x, y = load_data_file(str(tmp_path / "x.npz"), need_y=False)
    assert y is None and x.shape == (2, 1)
    with pytest.raises(ValueError, match="--data"):
        load_data_file(None)


def test_missing_or_broken_model_file_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        check_target_resolvable(str(tmp_path / "missing.keras"))
    (tmp_path / "broken.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable `.keras`"):
        check_target_resolvable(str(tmp_path / "broken.keras"))


def test_compare_checks_saved_model_arguments_before_starting_workers(saved):
    _, path, folder = saved
    with pytest.raises(ValueError, match="--data"):
        compare([str(path)], out_dir=str(folder / "out"), progress=None)
    with pytest.raises(ValueError, match=r"\['y'\]"):
        compare([str(path)], data=str(folder / "x_only.npz"), out_dir=str(folder / "out"),
                progress=None)
    with pytest.raises(ValueError, match="`mode` must be"):
        compare([str(path)], data=str(folder / "data.npz"), mode="fit",
                out_dir=str(folder / "out"), progress=None)
    with pytest.raises(ValueError, match="`seeds` must be"):
        compare([str(path)], data=str(folder / "data.npz"), seeds=0,
                out_dir=str(folder / "out"), progress=None)


def test_cli_exits_2_on_bad_saved_model_arguments(saved, capsys):
    _, path, folder = saved
    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers())
    args = parser.parse_args(["compare", str(path), "--out", str(folder / "out"), "--quiet"])
    assert run_compare(args) == 2
    assert "--data" in capsys.readouterr().err


def _records(model, x, batch_size=16):
    spec = load_spec_like(model, batch_size)
    return prediction_record(spec, model.get_weights(), x, full=True)


def load_spec_like(model, batch_size):
    from xstable.training import TrainingSpec

    return TrainingSpec(name="m", build_model=lambda: model, make_data=lambda: (None, None),
                        make_compile_args=dict, batch_size=batch_size)


def test_prediction_parity_names_the_first_layer_that_differs(tmp_path):
    x, _ = migration_specs._regression_data(rows=40)
    plain = migration_specs.functional_model(skew=True)  # skewed on torch only
    skewed = migration_specs.functional_model(skew=True)
    skewed.set_weights(plain.get_weights())
    skewed.get_layer("skew").skewed_backend = keras.config.backend()
    skewed.get_layer("skew").factor = 1.01
    plain.get_layer("skew").skewed_backend = "none"
    reference, other = _records(plain, x), _records(skewed, x)
    assert reference["rows"] == 40 and reference["layer_rows"] == 16
    assert [r["name"] for r in reference["layers"]] == ["hidden", "skew", "head"]
    same = prediction_parity(reference, reference)
    assert not same["differs"] and same["first_layer"] is None
    parity = prediction_parity(reference, other)
    assert parity["differs"]
    assert parity["first_layer"]["name"] == "skew"
    assert parity["first_layer"]["class"] == "BackendSkew"
    output = parity["outputs"][0]
    assert output["shape"] == [40, 1] and output["max_abs_deviation"] > 0
    assert 0.005 < output["max_relative_deviation"] < 0.02


def test_prediction_record_of_a_subclassed_model_has_its_layer_calls():
    # The recording follows layer calls, so a subclassed model's layers are compared too, in
    # the order its call() runs them.
    model = migration_specs.subclassed_model()
    x, _ = migration_specs._regression_data(rows=20)
    record = _records(model, x)
    assert [(r["class"], r["outputs"][0].shape) for r in record["layers"]] == [
        ("Dense", (16, 16)), ("Dense", (16, 1))
    ]
    np.testing.assert_allclose(record["layers"][-1]["outputs"][0], record["outputs"][0][:16],
                               rtol=1e-5, atol=1e-6)
    assert record["outputs"][0].shape == (20, 1) and record["notes"] == []


def test_stochastic_layers_are_found():
    keras.utils.clear_session()  # layer names start afresh
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dropout(0.2),
        keras.layers.GaussianNoise(0.1), keras.layers.Dropout(0.0),
        keras.layers.Reshape((3, 1)), keras.layers.GRU(2, dropout=0.1), keras.layers.Dense(1),
    ])
    assert stochastic_layers(model) == ["dropout", "gaussian_noise", "gru"]
    assert stochastic_layers(migration_specs.sequential_model()) == []


def test_run_statistic_is_the_mean_of_the_last_half():
    assert run_statistic([4.0, 3.0, 2.0, 1.0]) == 1.5
    assert math.isnan(run_statistic([1.0, float("nan")]))


def test_stochastic_comparison_verdicts():
    rng = np.random.default_rng(0)
    same_a = [[1.0] + list(0.5 + 0.05 * rng.normal(size=4)) for _ in range(5)]
    same_b = [[1.0] + list(0.5 + 0.05 * rng.normal(size=4)) for _ in range(5)]
    alike = stochastic_comparison(same_a, same_b)
    assert alike["verdict"] == "indistinguishable" and alike["p_value"] > 0.05
    assert alike["seeds"] == 5 and alike["reference_std"] > 0
    shifted = [[v + 0.5 for v in run] for run in same_b]
    differs = stochastic_comparison(same_a, shifted)
    assert differs["verdict"] == "differs"
    assert differs["p_value"] == pytest.approx(2 / 252)  # exact: every split of 10 runs
    assert differs["difference"] == pytest.approx(0.5 + alike["difference"])
    nan_runs = [[1.0, float("nan")]] + same_b[1:]
    one_sided = stochastic_comparison(same_a, nan_runs)
    assert one_sided["verdict"] == "differs" and one_sided["nonfinite_runs"] == 1


def test_findings_and_markdown_for_prediction_and_stochastic():
    runs = {b: {"status": "completed", "outcome": "ok", "first_nonfinite_step": None,
                "steps": 1, "final_loss": 1.0, "losses": [1.0], "nan_onset": None}
            for b in ("tensorflow", "torch")}
    parity = {"differs": True, "rows": 4, "layer_rows": 4, "notes": [],
              "outputs": [{"index": 0, "shape": [4, 1], "max_abs_deviation": 0.1,
                           "max_relative_deviation": 0.01, "differs": True}],
              "first_layer": {"name": "skew", "class": "BackendSkew",
                              "max_abs_deviation": 0.1, "max_relative_deviation": 0.01}}
    test = stochastic_comparison([[1.0, 0.5 + 0.01 * i] for i in range(5)],
                                 [[1.0, 0.9 + 0.01 * i] for i in range(5)])
    findings = target_findings(runs, {}, "tensorflow", prediction={"torch": parity},
                               stochastic={"torch": {**test, "layers": ["dropout"]}})
    kinds = [f["kind"] for f in findings]
    assert kinds == ["prediction", "stochastic"]
    assert "first layer that differs: `skew` (BackendSkew" in findings[0]["message"]
    assert "p = 0.007937" in findings[1]["message"] and "differs" in findings[1]["message"]
    report = {
        "schema_version": 1, "xstable_version": "0", "status": "complete",
        "settings": {"backends": ["tensorflow", "torch"], "reference": "tensorflow",
                     "device": "cpu", "tf32": "off", "batch_order": "pinned",
                     "initial_weights": "shared", "target_timeout_s": 1.0, "mode": "train",
                     "saved_model": None, "seeds": 5,
                     "tolerances": {"loss_rtol": 1e-3, "loss_atol": 1e-6,
                                    "tensor_rtol": 1e-4, "tensor_atol": 1e-6}},
        "backends": {b: {"status": "ok", "versions": None, "device": "cpu", "restarts": 0,
                         "wall_time_s": 1.0} for b in ("tensorflow", "torch")},
        "targets": [{"target": "t", "name": "t", "runs": runs, "divergence": {},
                     "localization": None, "findings": findings,
                     "prediction": {"torch": parity}, "prediction_errors": {},
                     "stochastic": {"torch": {**test, "layers": ["dropout"]}}}],
        "summary": {"findings": {"prediction": 1, "stochastic": 1},
                    "fail_on": ["prediction", "stochastic"], "exit_status": 1,
                    "wall_time_s": 1.0},
    }
    assert validate_report(json.loads(json.dumps(report))) == []
    markdown = render_markdown(report)
    assert "## Verdict: FAIL" in markdown
    assert "| t | torch | 4 | 1 | 1.0e-01 | 1.0e-02 | **differs** | `skew` (BackendSkew) |" \
        in markdown
    assert "stochastic: p = 0.00794 | **differs** |" in markdown
    assert "compared statistically, not step by step" in markdown
    report["settings"]["mode"] = "predict"
    predict_md = render_markdown(report)
    assert "first non-finite step" not in predict_md and "`skew`" in predict_md
    page = render_html(report, {"t": b"\x89PNG fake"})
    assert page.index("<div class='verdict FAIL'>FAIL</div>") < page.index("<h2>What fails</h2>")
    assert "data:image/png;base64,iVBORyBmYWtl" in page
    assert "first at skew" in page and "stochastic, p = 0.00794" in page
    report["summary"]["findings"] = {}
    report["targets"][0]["findings"] = []
    assert "<div class='verdict PASS'>PASS</div>" in render_html(report)


def test_prediction_files_are_read_as_data_only_from_their_own_place(tmp_path):
    import pickle
    from types import SimpleNamespace

    from xstable.compare.api import _prediction_parity
    from xstable.compare.exchange import save_tree
    from xstable.compare.targets import target_slug

    target = "pkg.mod:spec"
    (tmp_path / "predictions").mkdir()
    plan = SimpleNamespace(exchange_dir=str(tmp_path))
    record = {"status": "completed", "same_initial_weights": True,
              "result": {"extra": {"prediction_path": "/elsewhere/not/read.npz"}}}
    good = {"outputs": [np.ones((2, 1))], "layers": [], "rows": 2, "layer_rows": 2,
            "notes": []}
    save_tree(str(tmp_path / "predictions" / f"tensorflow-{target_slug(target)}.npz"), good)
    # A substituted file holding a pickle is refused and reported, never unpickled.
    (tmp_path / "predictions" / f"torch-{target_slug(target)}.npz").write_bytes(
        pickle.dumps({"outputs": []}))
    save_tree(str(tmp_path / "predictions" / f"jax-{target_slug(target)}.npz"), good)
    records = {"tensorflow": record, "torch": record, "jax": record}
    parity, errors = _prediction_parity(records, "tensorflow", DEFAULT_TOLERANCES, plan, target)
    assert set(parity) == {"jax"} and not parity["jax"]["differs"]
    assert "could not be read as data" in errors["torch"]


def test_bfloat16_outputs_cross_processes_as_float32(tmp_path):
    import ml_dtypes

    from xstable.compare.exchange import load_tree, save_tree

    values = np.array([1.0, -2.5, 3.0e38, 0.1], dtype=ml_dtypes.bfloat16)
    save_tree(str(tmp_path / "t.npz"), {"outputs": [values]})
    loaded = load_tree(str(tmp_path / "t.npz"))["outputs"][0]
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, values.astype(np.float32))

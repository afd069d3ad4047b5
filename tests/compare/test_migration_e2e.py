"""End to end: .keras files saved on JAX compared on all three backends, in both modes; dropout
models judged statistically; `assert_backends_agree`.

Spawns one worker per backend per run, so it runs once, in the JAX session.
"""

import json

import pytest

from tests.compare import migration_specs
from xstable.compare import compare, validate_report
from xstable.testing import assert_backends_agree

pytestmark = [pytest.mark.slow, pytest.mark.only_backend(
    "jax", reason="orchestration test spawns its own per-backend subprocesses; once is enough"
)]

SPECS = "tests.compare.migration_specs"
DROPOUT = f"{SPECS}:dropout_mlp"
DROPOUT_SKEWED = f"{SPECS}:dropout_rate_differs"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    paths = {}
    for name, model in (
        ("functional", migration_specs.functional_model()),
        ("sequential", migration_specs.sequential_model()),
        ("subclassed", migration_specs.subclassed_model()),
        ("skewed", migration_specs.functional_model(skew=True)),
    ):
        paths[name] = str(folder / f"{name}.keras")
        model.save(paths[name])
    migration_specs.save_regression_data(folder / "data.npz")
    migration_specs.save_regression_data(folder / "x.npz", with_y=False)
    return folder, paths


def _target(report, target):
    return next(t for t in report["targets"] if t["target"] == target)


def test_predict_mode_names_the_planted_layer_through_assert_backends_agree(files):
    folder, paths = files
    out = folder / "predict"
    targets = [paths[n] for n in ("functional", "sequential", "subclassed", "skewed")]
    with pytest.raises(AssertionError) as raised:
        assert_backends_agree(targets, mode="predict", data=str(folder / "x.npz"),
                              imports=[SPECS], out_dir=str(out))
    message = str(raised.value)
    assert "## Verdict: FAIL" in message
    assert "prediction on torch" in message and "`skew` (BackendSkew" in message
    assert str(out) in message
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert report["settings"]["mode"] == "predict"
    assert report["summary"]["findings"] == {"prediction": 1}
    for name in ("functional", "sequential", "subclassed"):
        entry = _target(report, paths[name])
        assert set(entry["prediction"]) == {"torch", "jax"}, name
        for parity in entry["prediction"].values():
            assert not parity["differs"] and parity["rows"] == 64
            assert parity["outputs"][0]["max_relative_deviation"] < 1e-5
    skewed = _target(report, paths["skewed"])
    assert skewed["prediction"]["torch"]["first_layer"]["name"] == "skew"
    assert not skewed["prediction"]["jax"]["differs"]
    markdown = (out / "report.md").read_text()
    assert "| **differs** | `skew` (BackendSkew) |" in markdown


def test_train_mode_saved_model_and_dropout_models(files):
    folder, paths = files
    out = folder / "train"
    report = compare([paths["functional"], DROPOUT, DROPOUT_SKEWED],
                     data=str(folder / "data.npz"), epochs=2, batch_size=16,
                     out_dir=str(out), progress=None, seeds=5)
    assert validate_report(report) == []
    saved = _target(report, paths["functional"])
    for backend in ("tensorflow", "torch", "jax"):
        run = saved["runs"][backend]
        assert run["status"] == "completed" and run["steps"] == 8, backend
    for backend in ("torch", "jax"):
        assert not saved["prediction"][backend]["differs"]
        assert saved["divergence"][backend]["first_divergent_step"] is None
    alike = _target(report, DROPOUT)
    assert alike["divergence"] == {} and alike["findings"] == []
    assert {t["verdict"] for t in alike["stochastic"].values()} == {"indistinguishable"}
    skewed = _target(report, DROPOUT_SKEWED)
    assert skewed["stochastic"]["torch"]["verdict"] == "differs"
    assert skewed["stochastic"]["jax"]["verdict"] == "indistinguishable"
    assert [(f["kind"], f["backend"]) for f in skewed["findings"]] == [("stochastic", "torch")]
    assert report["summary"]["findings"] == {"stochastic": 1}
    assert report["summary"]["exit_status"] == 1
    markdown = (out / "report.md").read_text()
    assert "compared statistically, not step by step" in markdown
    page = (out / "report.html").read_text()
    assert page.index("<div class='verdict FAIL'>FAIL</div>") < page.index("<h2>Targets</h2>")
    assert page.count("data:image/png;base64,") == 3


def test_mixed_float16_overflow_is_located_on_every_backend(tmp_path):
    target = f"{SPECS}:mixed_overflow"
    report = compare([target], dtype_policy="mixed_float16", out_dir=str(tmp_path),
                     progress=None, plots=False, fail_on="none")
    assert validate_report(report) == []
    assert report["settings"]["dtype_policy"] == "mixed_float16"
    entry = _target(report, target)
    for backend, run in entry["runs"].items():
        assert run["dtype_policy"] == "mixed_float16", backend
        scale = run["loss_scale"]
        assert scale["initial"] == 32768.0 and scale["overflow_steps"][0] == 0, backend
        assert scale["final"] < scale["initial"]
        onset = run["overflow_onset"]
        assert (onset["step"], onset["stage"], onset["layer"]) == (0, "backward", "amplify")
    markdown = (tmp_path / "report.md").read_text()
    assert "mixed_float16 on torch: loss scale 32768 -> " in markdown
    assert "first overflow, step 0 on torch: backward `amplify`" in markdown

"""End to end: one `compare` run over planted, benign and faulty specs on all three backends.

The run spawns its own worker per backend, so it is independent of the backend this pytest
process runs on; it runs once, in the JAX session.
"""

import json
import os

import pytest

from tests.compare import specs
from xstable.compare import compare, validate_report

pytestmark = [pytest.mark.slow, pytest.mark.only_backend(
    "jax", reason="orchestration test spawns its own per-backend subprocesses; once is enough"
)]

BENIGN = "tests.compare.specs:benign_mlp"
SATURATED = "tests.compare.specs:saturated_bce"
BATCHNORM = "tests.compare.specs:batchnorm_large_mean"
FAULTY = "tests.compare.specs:faulty"
HANG_TIMEOUT_S = 60.0  # Well above a slow target on a loaded 2-core machine.


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    # `faulty` comes before the last two targets, so the crashed (torch) and hung (JAX)
    # workers must be restarted to finish them.
    result = compare(
        [SATURATED, FAULTY, BENIGN, BATCHNORM],
        out_dir=str(out),
        timeout_s=HANG_TIMEOUT_S,
        progress=None,
    )
    return result, out


def _target(report, target):
    return next(t for t in report["targets"] if t["target"] == target)


def test_report_files_are_written_and_valid(report):
    result, out = report
    with open(out / "report.json") as f:
        on_disk = json.load(f)
    assert on_disk == result
    assert validate_report(on_disk) == []
    markdown = (out / "report.md").read_text()
    assert "| target | backend | outcome | first non-finite step | stage and layer |" in markdown
    assert f"| {BATCHNORM} | torch | nan | {specs.BATCHNORM_STEP} | NaN: forward `batchnorm`" \
        in markdown
    for entry in result["targets"]:
        if entry["plot"]:
            assert (out / entry["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert _target(result, BENIGN)["plot"]
    for backend in ("tensorflow", "torch", "jax"):
        assert os.path.exists(out / "runs" / backend)


def test_benign_spec_is_not_flagged(report):
    result, _ = report
    entry = _target(result, BENIGN)
    assert entry["findings"] == []
    for backend in ("torch", "jax"):
        divergence = entry["divergence"][backend]
        assert divergence["first_divergent_step"] is None
        assert divergence["compared_steps"] == 24
        assert divergence["max_relative_deviation"] < 1e-4
    assert all(run["same_initial_weights"] for run in entry["runs"].values())


def test_saturated_cross_entropy_is_flagged_at_its_step_in_the_loss(report):
    result, _ = report
    entry = _target(result, SATURATED)
    for backend in ("torch", "jax"):
        assert entry["divergence"][backend]["first_divergent_step"] == specs.SATURATION_STEP
        assert entry["divergence"][backend]["kind"] == "loss"
        location = entry["localization"]["backends"][backend]
        assert (location["stage"], location["layer"]) == ("loss", None), location
    assert entry["localization"]["step"] == specs.SATURATION_STEP


def test_batchnorm_divergence_is_named_at_its_layer(report):
    result, _ = report
    entry = _target(result, BATCHNORM)
    torch_div = entry["divergence"]["torch"]
    assert (torch_div["first_divergent_step"], torch_div["kind"]) == (
        specs.BATCHNORM_STEP, "nonfinite")
    location = entry["localization"]["backends"]["torch"]
    assert (location["stage"], location["layer"]) == ("forward", "batchnorm"), location
    assert [layer["name"] for layer in location["layers"]] == ["hidden", "batchnorm", "head"]
    assert location["layers"][0]["forward_deviation"] < 1e-4  # `hidden` agrees.
    onset = entry["runs"]["torch"]["nan_onset"]
    assert (onset["stage"], onset["layer"], onset["step"]) == (
        "forward", "batchnorm", specs.BATCHNORM_STEP)


def test_crash_and_hang_are_isolated(report):
    result, _ = report
    entry = _target(result, FAULTY)
    assert entry["runs"]["tensorflow"]["status"] == "completed"
    assert entry["runs"]["torch"]["status"] == "crashed"
    assert "SIGKILL" in entry["runs"]["torch"]["error"]
    assert entry["runs"]["jax"]["status"] == "timeout"
    assert f"longer than {HANG_TIMEOUT_S:.0f}s" in entry["runs"]["jax"]["error"]
    kinds = {(f["kind"], f["backend"]) for f in entry["findings"]}
    assert kinds == {("error", "torch"), ("error", "jax")}
    # The workers were restarted and finished the targets after the faulty one.
    assert result["backends"]["torch"]["restarts"] == 1
    assert result["backends"]["jax"]["restarts"] == 1
    for target in (BENIGN, BATCHNORM):
        assert all(r["status"] == "completed" for r in _target(result, target)["runs"].values())


def test_exit_status_follows_fail_on(report):
    result, _ = report
    assert result["summary"]["fail_on"] == ["prediction", "stochastic", "divergence", "error"]
    assert result["summary"]["exit_status"] == 1
    assert result["summary"]["findings"]["divergence"] >= 3


def test_jax_workers_share_compiled_programs_within_the_run(report):
    # Two JAX workers ran (one restarted after the hang); they share the run's own cache, in
    # the private exchange folder (removed at the end), and the one that finished says how
    # many programs it held.
    _, out = report
    import re

    counts = [int(n) for n in re.findall(r"compiled programs shared in this run: (\d+)",
                                         (out / "logs" / "jax.log").read_text())]
    assert counts and max(counts) > 0
    assert "compiled programs shared" not in (out / "logs" / "torch.log").read_text()
    assert not (out / "work").exists()

import os

import pytest

from xstable.__main__ import main
from xstable.compare import compare


def test_bad_arguments_exit_with_status_2(capsys):
    assert main(["compare", "m:f", "--backends", "tensorflow,mxnet"]) == 2
    assert "`--backends` takes a comma-separated subset" in capsys.readouterr().err
    assert main(["compare", "m:f", "--fail-on", "nans"]) == 2
    assert "unknown kinds ['nans']" in capsys.readouterr().err
    assert main(["compare", "m:f", "--backends", "jax", "--reference", "torch"]) == 2
    assert "`reference` must be one of the compared backends" in capsys.readouterr().err


def test_help_lists_findings_and_targets():
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    assert exit_info.value.code == 0


@pytest.mark.only_backend(
    "jax", reason="spawns its own worker subprocess with a broken backend; once is enough"
)
def test_backend_that_cannot_be_imported_is_reported_unavailable(tmp_path):
    # A `jax` package that fails on import stands in for a missing installation.
    shadow = tmp_path / "shadow"
    (shadow / "jax").mkdir(parents=True)
    (shadow / "jax" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'jax'\", name='jax')\n"
    )
    out = tmp_path / "out"
    result = compare(
        ["tests.compare.specs:benign_mlp"], backends=["jax"], out_dir=str(out),
        fail_on="unavailable", plots=False, progress=None,
        env={"PYTHONPATH": os.pathsep.join([str(shadow), os.getcwd()])},
    )
    assert result["summary"]["exit_status"] == 1
    assert result["backends"]["jax"]["status"] == "unavailable"
    report = (out / "report.md").read_text()
    assert "| tests.compare.specs:benign_mlp | jax | **unavailable** |" in report
    assert "jax could not be imported" in report


@pytest.mark.only_backend(
    "jax", reason="spawns its own worker subprocess; backend-independent, once is enough"
)
def test_gpu_device_without_a_gpu_is_reported_unavailable(tmp_path):
    import xstable

    if xstable.active_device() != "cpu":
        pytest.skip("a GPU is visible: the run would not be unavailable")
    result = compare(["tests.compare.specs:benign_mlp"], backends=["jax"], device="gpu",
                     out_dir=str(tmp_path), plots=False, progress=None)
    run = result["targets"][0]["runs"]["jax"]
    assert run["status"] == "unavailable"
    assert "sees no GPU" in run["error"]

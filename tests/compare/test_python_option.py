"""`--python BACKEND=PATH`: a backend's worker run by another interpreter (issue #33)."""

import os
import sys

import pytest

from xstable.__main__ import main
from xstable.compare import compare, validate_report

TINY = "tests.compare.specs:tiny"


@pytest.mark.slow
@pytest.mark.only_backend(
    "jax", reason="spawns its own worker subprocess; backend-independent, once is enough"
)
def test_a_backend_runs_under_the_interpreter_it_is_given(tmp_path):
    marker = tmp_path / "wrapper-ran"
    wrapper = tmp_path / "python-wrapper"
    # Stands in for another environment's interpreter; `exec` keeps the worker's pid.
    wrapper.write_text(f'#!/bin/sh\necho "$@" > "{marker}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    report = compare([TINY], backends=["jax"], out_dir=str(tmp_path / "out"), plots=False,
                     progress=None, python={"jax": str(wrapper)})
    assert validate_report(report) == []
    assert "-m xstable.compare.worker --plan" in marker.read_text()
    assert report["settings"]["python"] == {"jax": str(wrapper)}
    assert report["backends"]["jax"]["python"] == sys.executable
    assert report["targets"][0]["runs"]["jax"]["status"] == "completed"
    assert f"jax `{wrapper}`" in (tmp_path / "out" / "report.md").read_text()


def test_a_bad_interpreter_option_is_a_usage_error(tmp_path, capsys):
    out = ["--out", str(tmp_path / "o"), "--backends", "jax"]
    assert main(["compare", TINY, "--python", "jax", *out]) == 2
    assert "`--python` takes BACKEND=PATH" in capsys.readouterr().err
    assert main(["compare", TINY, "--python", f"jax={tmp_path / 'nope'}", *out]) == 2
    assert "must be the path of an executable Python interpreter" in capsys.readouterr().err
    assert main(["compare", TINY, "--python", f"torch={sys.executable}", *out]) == 2
    assert "names a backend that is not compared" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "report.json")

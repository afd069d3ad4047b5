"""The A/A noise floor: the reference trains each target twice and the report says how far the
two identical runs part (issue #33)."""

import pytest

from xstable.compare import compare, validate_report
from xstable.compare.report import render_markdown

TINY = "tests.compare.specs:tiny"


@pytest.mark.slow
@pytest.mark.only_backend(
    "jax", reason="spawns its own worker subprocess; backend-independent, once is enough"
)
def test_reference_runs_twice_and_reports_its_noise_floor(tmp_path):
    report = compare([TINY], backends=["jax"], out_dir=str(tmp_path), plots=False,
                     progress=None, noise_floor=True)
    assert validate_report(report) == []
    noise = report["targets"][0]["noise_floor"]
    # Two runs of the same program from the same weights and batches on CPU: bit-identical.
    assert noise == {"backend": "jax", "compared_steps": 2, "max_relative_deviation": 0.0,
                     "first_divergent_step": None}
    markdown = (tmp_path / "report.md").read_text()
    assert "(reference; A/A 0.0e+00)" in markdown
    assert "A/A noise floor on jax: two identical runs part by at most 0.0e+00 over 2" in markdown


def test_without_the_flag_there_is_no_noise_floor_and_a_nondeterministic_reference_is_named():
    from tests.compare.test_report_schema import minimal_report

    report = minimal_report()
    assert "A/A" not in render_markdown(report)
    report["targets"][0]["noise_floor"] = {"backend": "tensorflow", "compared_steps": 5,
                                           "max_relative_deviation": 0.2,
                                           "first_divergent_step": 3}
    markdown = render_markdown(report)
    assert "beyond the tolerance from step 3: the reference is not deterministic" in markdown

import json

import keras
import pytest

from xstable.scenarios.__main__ import main
from xstable.scenarios.claims_table import format_outcome, load_results, render_claims_table


@pytest.fixture(scope="module")
def results_file(scenario_results, tmp_path_factory):
    path = tmp_path_factory.mktemp("scenarios") / f"results-{keras.config.backend()}.json"
    path.write_text(json.dumps([r.to_dict() for r in scenario_results.values()]))
    return path


def test_table_has_a_row_per_variant_and_the_measured_cells(results_file, scenario_results):
    loaded = load_results([results_file])
    assert [r.outcome for r in loaded] == [r.outcome for r in scenario_results.values()]
    table = render_claims_table(loaded)
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]
    assert len(rows) == len(scenario_results)
    for result in scenario_results.values():
        assert format_outcome(result) in table
    assert " !" not in table.replace("| !", ""), "an outcome differs from its expectation"


def test_cells_say_step_and_stage_or_final_loss(scenario_results):
    stress = scenario_results[("linear_fit.unscaled", "stress")]
    cell = format_outcome(stress)
    assert cell.startswith(f"nan @ step {stress.first_nonfinite_step} (")
    assert stress.extra["nan_location"]["stage"] in cell
    fix = scenario_results[("linear_fit.unscaled", "xstable_fix")]
    assert format_outcome(fix) == f"ok (loss {fix.final_loss:.3g})"


def test_summary_table_puts_the_variants_of_a_scenario_side_by_side(results_file, capsys):
    out_file = results_file.parent / "summary.md"
    assert main(["summary", str(results_file), "--out", str(out_file)]) == 0
    text = out_file.read_text()
    assert text.startswith("| Scenario | Variant |")
    assert "`regression_nan.outlier`" in text and "| | xstable fix at or below" in text
    assert "**ok " in text  # xstable fixes in bold


def test_command_line_table_and_list(results_file, capsys):
    assert main(["table", str(results_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Scenario (document, example) |") and "linear_fit.unscaled" in out
    assert main(["list"]) == 0
    assert "regression_nan.outlier" in capsys.readouterr().out


def test_command_line_run_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    status = main(
        [
            "run",
            "--scenario",
            "in_range_data.saturated_bias",
            "--variant",
            "stress",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    (result,) = load_results([out])
    assert result.outcome == "nan" and result.extra["variant"] == "stress"
    assert "in_range_data.saturated_bias" in capsys.readouterr().err


def test_load_results_rejects_other_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="must hold a JSON list"):
        load_results([path])


def test_readme_table_is_the_one_generated_from_the_committed_results(tmp_path):
    from pathlib import Path

    from xstable.scenarios.summary_table import render_compact_table, replace_marked_block

    root = Path(__file__).resolve().parents[2]
    results = sorted((root / "docs" / "scenario-results").glob("results-*.json"))
    assert len(results) == 3, results
    readme = (root / "README.md").read_text(encoding="utf-8")
    generated = replace_marked_block(
        readme, "scenario-table", render_compact_table(load_results(results))
    )
    assert readme == generated, (
        "README's scenario table is not the generated one: run "
        "`python -m xstable.scenarios summary docs/scenario-results/results-*.json --readme README.md`"
    )


def test_readme_option_rewrites_only_the_marked_block(results_file, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- scenario-table -->\nold\n<!-- /scenario-table -->\nend\n")
    assert main(["summary", str(results_file), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- scenario-table -->\n| scenario | failure |")
    assert "old" not in text and text.endswith("<!-- /scenario-table -->\nend\n")
    with pytest.raises(ValueError, match="scenario-table"):
        from xstable.scenarios.summary_table import replace_marked_block

        replace_marked_block("no markers", "scenario-table", "x")

import pathlib
import runpy

import pytest

from xstable.scenarios.claims_table import render_run_table
from xstable.scenarios.registry import DOCUMENT_MODULES

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("module", DOCUMENT_MODULES, ids=lambda m: m.__name__.split(".")[-1])
def test_one_example_script_per_document(module):
    topic = module.__name__.split(".")[-1]
    script = EXAMPLES / f"{topic}.py"
    assert script.exists(), f"examples/{topic}.py is missing"
    namespace = runpy.run_path(str(script), run_name="example_under_test")
    assert callable(namespace["main"])
    assert module.DOCUMENT.split("_")[0] in namespace["__doc__"]


def test_example_table_lists_every_run(scenario_results):
    table = render_run_table(list(scenario_results.values()))
    assert len(table.splitlines()) == 2 + len(scenario_results)
    assert "| linear_fit.unscaled | stress | nan | nan @ step" in table


def test_example_script_runs_a_variant_and_prints_its_table(capsys):
    namespace = runpy.run_path(str(EXAMPLES / "linear_fit.py"), run_name="example_under_test")
    assert namespace["main"](["--variant", "xstable_fix"]) == 0
    printed = capsys.readouterr().out
    assert "Seed document 001" in printed
    assert "| linear_fit.unscaled | xstable_fix | ok | ok (loss" in printed

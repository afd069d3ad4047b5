"""Seed-document scenarios: every NaN claim of the four documents, ported and measured.

Each `Scenario` is one code example of a seed document (one of four Q&A articles on NaN loss in Keras), with the document's
claim and variants: `failure` (the document's code, ported with the fewest changes),
`document_fix` (its fix), `stress` (ours: the nearest setting that does go non-finite when the
failure does not) and `xstable_fix` (the same problem solved with xstable components).
`run(scenario, variant)` trains one on the active backend with a pinned seed and batch order.

Command line: `python -m xstable.scenarios run --out results-<backend>.json`, then
`python -m xstable.scenarios table results-*.json` for the claim-vs-measured table.
"""

from xstable.scenarios.registry import all_scenarios, get_scenario, scenario_ids
from xstable.scenarios.run import run, run_all
from xstable.scenarios.scenario import VARIANT_KINDS, Scenario, Variant, expect

__all__ = [
    "Scenario",
    "Variant",
    "VARIANT_KINDS",
    "all_scenarios",
    "expect",
    "get_scenario",
    "run",
    "run_all",
    "scenario_ids",
]

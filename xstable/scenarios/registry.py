"""The registry: every scenario of the four seed documents, in document order."""

from xstable.scenarios import after_normalization, in_range_data, linear_fit, regression_nan
from xstable.scenarios.declaration import build_scenarios

__all__ = [
    "DOCUMENT_MODULES",
    "all_scenarios",
    "document_scenarios",
    "get_scenario",
    "scenario_ids",
]

# One module per seed document, in the order of their file names.
DOCUMENT_MODULES = (regression_nan, linear_fit, in_range_data, after_normalization)

_SCENARIOS = {}


def document_scenarios(module):
    """Returns the scenarios declared by one of `DOCUMENT_MODULES`, in the document's order.

    Args:
        module: a document module: it declares `DOCUMENT`, `TITLE` and `EXAMPLES`.
    """
    return build_scenarios(module.DOCUMENT, module.TITLE, module.EXAMPLES)


def _load():
    if not _SCENARIOS:
        for module in DOCUMENT_MODULES:
            for scenario in document_scenarios(module):
                if scenario.id in _SCENARIOS:
                    raise ValueError(f"Two scenarios share the id {scenario.id!r}.")
                _SCENARIOS[scenario.id] = scenario
    return _SCENARIOS


def all_scenarios():
    """Returns every registered `Scenario`, ordered by document and example."""
    return list(_load().values())


def scenario_ids():
    """Returns the ids of every registered scenario, in registry order."""
    return list(_load())


def get_scenario(scenario_id):
    """Returns the `Scenario` with id `scenario_id`.

    Raises:
        TypeError: If `scenario_id` is not a str.
        KeyError: If no scenario has that id; the message lists the known ids.
    """
    if not isinstance(scenario_id, str):
        raise TypeError(
            f"`scenario_id` must be a str. Received: scenario_id of type "
            f"{type(scenario_id).__name__}."
        )
    scenarios = _load()
    if scenario_id not in scenarios:
        raise KeyError(f"No scenario {scenario_id!r}. Known scenarios: {list(scenarios)}.")
    return scenarios[scenario_id]

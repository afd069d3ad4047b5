"""One run of every scenario variant per test session, shared by the scenario test modules."""

import pytest

from xstable.scenarios import run_all


@pytest.fixture(scope="session")
def scenario_results():
    """Every scenario variant run once on the active backend: {(scenario id, kind): RunResult}."""
    return {(r.extra["scenario"], r.extra["variant"]): r for r in run_all()}

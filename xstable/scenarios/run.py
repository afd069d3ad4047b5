"""`run(scenario, variant)`: train one scenario variant on the active backend and measure it."""

from xstable import runtime
from xstable.scenarios.initial_weights import portable_weights_for_spec
from xstable.scenarios.registry import all_scenarios, get_scenario
from xstable.scenarios.scenario import Scenario
from xstable.training import run_spec

__all__ = ["run", "run_all"]


def _resolve(scenario):
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, str):
        return get_scenario(scenario)
    raise TypeError(
        f"`scenario` must be a `Scenario` or a scenario id (str). "
        f"Received: scenario of type {type(scenario).__name__}."
    )


def run(scenario, variant, initial_weights=None):
    """Trains one variant of a scenario on the active backend and returns what it measured.

    Data, initial weights and batch order are pinned: the data come from a seeded NumPy
    generator, the Dense kernels are drawn by NumPy (`portable_initial_weights`) and the batch
    order by `xstable.training.batch_order`, so the same call on another backend trains the
    same model on the same rows in the same steps, and outcomes differ only where the
    backends' numerics do.

    Args:
        scenario: `Scenario`, or a scenario id such as `"linear_fit.unscaled"`.
        variant: str, the variant kind: `"failure"`, `"stress"`, `"document_fix"` or
            `"xstable_fix"`.
        initial_weights: optional list of NumPy arrays for the model (see `run_spec`);
            default: `portable_weights_for_spec(spec)`.

    Returns:
        An `xstable.training.RunResult` whose `extra` holds the scenario's id, document,
        example, claim, the variant's origin and changes, the expected outcome on this backend
        and `matches_expected`.

    Raises:
        TypeError: If `scenario` is neither a `Scenario` nor a str.
        KeyError: If the scenario or the variant does not exist.

    Example:

    >>> result = run("regression_nan.learning_rate", "document_fix")
    >>> result.outcome
    'ok'
    """
    scenario = _resolve(scenario)
    chosen = scenario.variant(variant)
    backend = runtime.active_backend()
    spec = chosen.spec()
    weights_source = "given"
    if initial_weights is None:
        initial_weights = portable_weights_for_spec(spec)
        weights_source = "numpy_glorot_uniform"
    result = run_spec(
        spec,
        initial_weights=initial_weights,
        diverged_threshold=scenario.diverged_threshold,
    )
    expected = chosen.expected_outcome(backend)
    result.extra.update(
        scenario=scenario.id,
        variant=chosen.kind,
        document=scenario.document,
        example=scenario.example,
        claim=scenario.claim,
        claimed_outcome=scenario.claimed_outcome,
        origin=chosen.origin,
        summary=chosen.summary,
        changes=list(chosen.changes),
        expected_outcome=expected,
        expected_reason=chosen.expected_reason,
        matches_expected=result.outcome == expected,
        threshold_reason=scenario.threshold_reason,
        initial_weights=weights_source,
    )
    return result


def run_all(scenarios=None, variants=None, progress=None):
    """Runs every variant of every scenario (or the given subsets) on the active backend.

    Args:
        scenarios: optional iterable of `Scenario` or ids; default: all registered.
        variants: optional iterable of variant kinds to run; default: every variant.
        progress: optional `(RunResult) -> None` called after each run.

    Returns:
        A list of `RunResult`, in registry and variant order.
    """
    chosen = [_resolve(s) for s in scenarios] if scenarios is not None else all_scenarios()
    results = []
    for scenario in chosen:
        for kind in scenario.variant_kinds():
            if variants is not None and kind not in variants:
                continue
            result = run(scenario, kind)
            results.append(result)
            if progress is not None:
                progress(result)
    return results

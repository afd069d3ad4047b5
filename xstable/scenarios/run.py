"""`run(scenario, variant)`: train one scenario variant on the active backend and measure it."""

import copy

import keras
import numpy as np

from xstable import runtime
from xstable.diagnosis import locate_nonfinite
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


class _StepSnapshots:
    """Keeps the model, weights, optimizer state and batch of the last two steps.

    A NaN loss at step k comes either from step k's forward pass and loss (seen with the
    weights before step k) or from step k-1's update (the weights before step k are already
    non-finite); `locate` replays whichever step it was.
    """

    def __init__(self):
        self.model = None
        self.steps = []

    def __call__(self, step, epoch, batch, model, x_batch, y_batch):
        self.model = model
        optimizer = getattr(model, "optimizer", None)
        state = [] if optimizer is None else [np.array(v) for v in _values(optimizer.variables)]
        self.steps = [*self.steps[-1:], (step, model.get_weights(), state, x_batch, y_batch)]

    def locate(self):
        """Returns `(step, NonFiniteLocation or None)` for the step that produced the first NaN."""
        found = (None, None)
        for step, weights, state, x_batch, y_batch in reversed(self.steps):
            self.model.set_weights(weights)
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None and len(state) == len(optimizer.variables):
                for variable, value in zip(optimizer.variables, state):
                    variable.assign(value)
            location = locate_nonfinite(self.model, x_batch, y_batch)
            if location is not None:
                found = (step, location)
            # Weights already non-finite before this step: the previous step's update made them.
            if location is None or not _weights_were_nonfinite(location):
                break
        return found


def _weights_were_nonfinite(location):
    return location.stage == "forward" and location.tensor == "weight"


def _values(variables):
    return [keras.ops.convert_to_numpy(v.value) for v in variables]


def run(scenario, variant, initial_weights=None, locate=True, cache=None):
    """Trains one variant of a scenario on the active backend and returns what it measured.

    Data, initial weights and batch order are pinned: the data come from a seeded NumPy
    generator, the Dense kernels are drawn by NumPy (`portable_initial_weights`) and the batch
    order by `xstable.training.batch_order`, so the same call on another backend trains the
    same model on the same rows in the same steps, and outcomes differ only where the
    backends' numerics do.

    When the loss goes non-finite, the step that produced it is replayed with
    `xstable.diagnosis.locate_nonfinite` (from the weights and optimizer state before that
    step) and its answer is stored in `result.extra["nan_location"]`.

    Args:
        scenario: `Scenario`, or a scenario id such as `"linear_fit.unscaled"`.
        variant: str, the variant kind: `"failure"`, `"stress"`, `"document_fix"` or
            `"xstable_fix"`.
        initial_weights: optional list of NumPy arrays for the model (see `run_spec`);
            default: `portable_weights_for_spec(spec)`.
        locate: bool, locate the first non-finite value when there is one.
        cache: optional dict shared between calls: variants whose specs have the same name
            (the same code, reused by two scenarios) are trained once.

    Returns:
        An `xstable.training.RunResult` whose `extra` holds the scenario's id, document,
        example, claim, the variant's origin and changes, the expected outcome on this backend,
        `matches_expected` and `nan_location` (a dict, or `None` when all stayed finite).

    Raises:
        TypeError: If `scenario` is neither a `Scenario` nor a str.
        KeyError: If the scenario or the variant does not exist.

    Example:

    >>> result = run("regression_nan.learning_rate", "stress")
    >>> result.outcome, result.extra["nan_location"]["stage"]
    ('nan', 'loss')
    """
    scenario = _resolve(scenario)
    chosen = scenario.variant(variant)
    spec = chosen.spec()
    key = (spec.name, initial_weights is None, bool(locate))
    if cache is not None and key in cache:
        result = copy.deepcopy(cache[key])
    else:
        result = _measure(spec, initial_weights, locate)
        if cache is not None:
            cache[key] = copy.deepcopy(result)
    expected = chosen.expected_outcome(runtime.active_backend())
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
    )
    return result


def _measure(spec, initial_weights, locate):
    weights_source = "given"
    if initial_weights is None:
        initial_weights = portable_weights_for_spec(spec)
        weights_source = "numpy_glorot_uniform"
    snapshots = _StepSnapshots() if locate else None
    result = run_spec(
        spec,
        initial_weights=initial_weights,
        before_step=snapshots,
    )
    location_step, location = None, None
    if snapshots is not None and result.outcome == "nan":
        location_step, location = snapshots.locate()
    result.extra.update(
        initial_weights=weights_source,
        nan_location=None if location is None else location.to_dict(),
        nan_location_step=location_step,
    )
    return result


def run_all(scenarios=None, variants=None, progress=None, locate=True):
    """Runs every variant of every scenario (or the given subsets) on the active backend.

    Variants that share code (the same spec name) are trained once.

    Args:
        scenarios: optional iterable of `Scenario` or ids; default: all registered.
        variants: optional iterable of variant kinds to run; default: every variant.
        progress: optional `(RunResult) -> None` called after each run.
        locate: bool, locate the first non-finite value of runs that go non-finite.

    Returns:
        A list of `RunResult`, in registry and variant order.
    """
    chosen = [_resolve(s) for s in scenarios] if scenarios is not None else all_scenarios()
    cache = {}
    results = []
    for scenario in chosen:
        for kind in scenario.variant_kinds():
            if variants is not None and kind not in variants:
                continue
            result = run(scenario, kind, locate=locate, cache=cache)
            results.append(result)
            if progress is not None:
                progress(result)
    return results

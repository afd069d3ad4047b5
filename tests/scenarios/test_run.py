"""Every scenario variant runs on this backend and does what its scenario records."""

import math

import keras
import pytest

from xstable.inspection.location import STAGES
from xstable.scenarios import all_scenarios, get_scenario, run
from xstable.scenarios.registry import scenario_ids
from xstable.scenarios.summary_table import compare_to_document

SEED_DOCUMENTS = {
    "000_d253c13cab404a73.txt",
    "001_4e8dde463d9e341c.txt",
    "002_274eff1696522b9c.txt",
    "003_c52b4ecd4f715f77.txt",
}
CASES = [(s.id, kind) for s in all_scenarios() for kind in s.variant_kinds()]


def test_one_scenario_per_code_example_of_the_four_documents():
    pairs = sorted((s.document, s.example) for s in all_scenarios())
    assert pairs == sorted((d, e) for d in SEED_DOCUMENTS for e in (1, 2, 3))
    assert len(set(scenario_ids())) == 12
    with pytest.raises(KeyError, match="Known scenarios"):
        get_scenario("no.such")


@pytest.mark.parametrize("scenario_id,kind", CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_outcome_matches_the_recorded_expectation(scenario_results, backend, scenario_id, kind):
    result = scenario_results[(scenario_id, kind)]
    expected = get_scenario(scenario_id).variant(kind).expected_outcome(backend)
    assert result.outcome == expected, (
        f"{scenario_id} {kind} on {backend}: measured {result.outcome}, recorded {expected}; "
        f"first non-finite step {result.first_nonfinite_step}, final loss {result.final_loss}, "
        f"trivial loss {result.trivial_loss}, losses {result.losses[:5]}...{result.losses[-3:]}"
    )
    assert result.extra["matches_expected"]


@pytest.mark.parametrize("scenario", all_scenarios(), ids=scenario_ids())
def test_every_xstable_fix_is_recorded_ok_on_every_backend(scenario):
    if "xstable_fix" not in scenario.variants:
        return
    outcomes, _ = scenario.variant("xstable_fix").expected
    if set(outcomes.values()) != {"ok"}:
        assert scenario.xstable_fix_note.startswith("Not `ok`"), (scenario.id, outcomes)


@pytest.mark.parametrize("scenario", all_scenarios(), ids=scenario_ids())
def test_xstable_fix_ends_at_or_below_the_document_fix(scenario_results, scenario):
    if "xstable_fix" not in scenario.variants:
        return
    mine = scenario_results[(scenario.id, "xstable_fix")]
    theirs = scenario_results[(scenario.id, "document_fix")]
    verdict = compare_to_document(mine, theirs)
    relative = (mine.final_loss / mine.trivial_loss, theirs.final_loss / theirs.trivial_loss)
    if scenario.xstable_fix_note.startswith("Above the document's fix"):
        assert verdict == "no", f"{scenario.id} is level now ({relative}): update its note"
    else:
        assert verdict != "no", f"{scenario.id}: xstable {relative[0]:.4g} vs {relative[1]:.4g}"


@pytest.mark.parametrize("scenario", all_scenarios(), ids=scenario_ids())
def test_a_failure_that_stays_finite_has_a_stress_variant_or_says_why(scenario):
    failure, _ = scenario.variant("failure").expected
    if "nan" in failure.values():
        return
    if "stress" in scenario.variants:
        stress, _ = scenario.variant("stress").expected
        assert set(stress.values()) == {"nan"}, stress
        assert scenario.variant("stress").origin == "ours"
    else:
        assert scenario.no_stress_reason.strip(), f"{scenario.id} needs a stress variant"
        assert "xstable_fix" not in scenario.variants


@pytest.mark.parametrize("scenario", all_scenarios(), ids=scenario_ids())
def test_every_variant_lists_its_changes_from_the_document(scenario):
    for kind in scenario.variant_kinds():
        variant = scenario.variant(kind)
        assert variant.changes and all(isinstance(c, str) and c for c in variant.changes)
        if variant.origin == "ours":
            assert any(c.startswith(("ours", "xstable")) for c in variant.changes), (
                f"{scenario.id} {kind}: a variant of ours must say which change is ours"
            )


def test_nonfinite_runs_record_the_step_and_where_it_arose(scenario_results):
    nan_runs = [r for r in scenario_results.values() if r.outcome == "nan"]
    assert nan_runs, "the stress variants must produce non-finite runs"
    for result in nan_runs:
        step = result.first_nonfinite_step
        assert step is not None and not math.isfinite(result.losses[step])
        assert all(math.isfinite(v) for v in result.losses[:step])
        assert step == sum(result.steps_per_epoch[: result.first_nonfinite_epoch]) + (
            result.first_nonfinite_batch
        )
        location = result.extra["nan_location"]
        assert location is not None, f"{result.name}: no location recorded"
        assert location["stage"] in STAGES
        assert result.extra["nan_location_step"] in (step, step - 1)


def test_results_say_where_and_how_they_ran(scenario_results, backend):
    for (scenario_id, kind), result in scenario_results.items():
        assert result.backend == backend and result.versions["keras"] == keras.__version__
        assert result.seed == 0 and result.wall_time_s > 0
        assert result.extra["initial_weights"] == "numpy_glorot_uniform"
        assert result.extra["scenario"] == scenario_id and result.extra["variant"] == kind
        assert result.extra["changes"] and result.extra["claim"]
        if result.outcome != "nan":
            assert result.weights_finite and result.first_nonfinite_step is None
            assert len(result.losses) == sum(result.steps_per_epoch)


def test_variants_sharing_code_share_results(scenario_results):
    clip = scenario_results[("after_normalization.gradient_clipping", "failure")]
    tanh = scenario_results[("after_normalization.tanh_large_inputs", "failure")]
    assert clip.name == tanh.name and clip.losses == tanh.losses
    assert clip.extra["scenario"] != tanh.extra["scenario"]


def test_run_takes_an_id_or_a_scenario_and_checks_it():
    result = run("in_range_data.saturated_bias", "stress", locate=False)
    assert result.outcome == "nan" and result.extra["nan_location"] is None
    with pytest.raises(TypeError, match="`scenario` must be a `Scenario`"):
        run(3, "failure")
    with pytest.raises(KeyError, match="has no 'stress' variant"):
        run("in_range_data.log_loss_rmsprop", "stress")


def test_keras3_rejects_the_documents_integer_learning_rate():
    # Why regression_nan.learning_rate passes 10.0 where the document writes 10.
    with pytest.raises(ValueError, match="learning_rate"):
        keras.optimizers.Adam(learning_rate=10)

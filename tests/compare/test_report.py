"""Findings of one target: a divergence is a `drift` only when its own step was cleared."""

from xstable.compare.report import target_findings


def _run():
    return {"status": "completed", "outcome": "ok", "first_nonfinite_step": None}


def _div(step):
    return {"first_divergent_step": step, "kind": "loss", "reference_loss": 1.0, "loss": 1.2}


def _location(stage, step=None):
    location = {"stage": stage, "layer": None, "detail": "-", "layers": []}
    if step is not None:
        location["step"] = step
    return location


def _kinds(findings):
    return {f["backend"]: f["kind"] for f in findings}


def test_agreeing_step_is_drift_and_a_named_part_is_divergence():
    localization = {
        "step": 7,
        "reference": "tensorflow",
        "backends": {"torch": _location("none"), "jax": _location("backward")},
        "errors": {},
    }
    findings = target_findings(
        {"tensorflow": _run(), "torch": _run(), "jax": _run()},
        {"torch": _div(7), "jax": _div(7)},
        "tensorflow",
        localization,
    )
    assert _kinds(findings) == {"torch": "drift", "jax": "divergence"}
    assert "identical state" in [f for f in findings if f["kind"] == "drift"][0]["message"]


def test_agreeing_at_an_earlier_step_does_not_clear_a_later_divergence():
    localization = {
        "step": 18,
        "reference": "tensorflow",
        "backends": {"torch": _location("none"), "jax": _location("none")},
        "errors": {},
    }
    findings = target_findings(
        {"tensorflow": _run(), "torch": _run(), "jax": _run()},
        {"torch": _div(18), "jax": _div(22)},
        "tensorflow",
        localization,
    )
    assert _kinds(findings) == {"torch": "drift", "jax": "divergence"}


def test_a_check_at_the_backends_own_step_clears_it():
    localization = {
        "step": 18,
        "reference": "tensorflow",
        "backends": {"jax": _location("none", step=22)},
        "errors": {},
    }
    findings = target_findings(
        {"tensorflow": _run(), "jax": _run()}, {"jax": _div(22)}, "tensorflow", localization
    )
    assert _kinds(findings) == {"jax": "drift"}


def test_without_a_per_layer_check_a_divergence_stays_a_divergence():
    findings = target_findings(
        {"tensorflow": _run(), "torch": _run()}, {"torch": _div(3)}, "tensorflow", None
    )
    assert _kinds(findings) == {"torch": "divergence"}


def test_runs_without_shared_weights_are_not_compared_and_never_drift():
    findings = target_findings(
        {"torch": _run(), "jax": _run()}, {}, "torch", None,
        {"jax": "not compared with torch: the runs did not start from shared initial weights"},
    )
    assert findings == [{"kind": "unavailable", "backend": "jax", "message":
                         "not compared with torch: the runs did not start from shared initial "
                         "weights"}]


def test_an_interrupted_run_is_no_finding():
    interrupted = {**_run(), "status": "interrupted", "error": "interrupted: SIGTERM"}
    assert target_findings({"torch": _run(), "jax": interrupted}, {}, "torch") == []


def test_the_report_opens_with_a_verdict_and_a_count_per_finding():
    from tests.compare.test_report_schema import minimal_report
    from xstable.compare.report import render_markdown

    report = minimal_report()  # One `nan` finding; fails on `nan`.
    lines = render_markdown(report).splitlines()
    assert lines[2] == "## Verdict: FAIL"
    assert "| nan | 1 | **yes** |" in lines and "| divergence | 0 | no |" in lines
    report["summary"].update(fail_on=["divergence"], exit_status=0)
    assert "## Verdict: PASS" in render_markdown(report)
    report.update(status="interrupted")
    report["summary"].update(interrupted="SIGINT", exit_status=130)
    markdown = render_markdown(report)
    assert "## Verdict: INTERRUPTED (SIGINT)" in markdown and "Exit status 130" in markdown

import copy

from xstable.compare.report_schema import REPORT_SCHEMA, SCHEMA_VERSION, validate_report


def minimal_report():
    run = {
        "status": "completed", "outcome": "nan", "steps": 2, "first_nonfinite_step": 1,
        "nan_onset": {"step": 1, "stage": "forward", "layer": "dense", "detail": "x"},
        "final_loss": "nan", "losses": [0.5, "nan"], "same_initial_weights": True,
        "compile_mode": "eager", "device": "cpu", "wall_time_s": 0.1, "error": None,
        "result_path": "runs/torch/t.json",
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "xstable_version": "0.1.0",
        "settings": {
            "backends": ["tensorflow", "torch"], "reference": "tensorflow", "device": "cpu",
            "tolerances": {"loss_rtol": 1e-3, "loss_atol": 1e-6, "tensor_rtol": 1e-4,
                           "tensor_atol": 1e-6},
            "target_timeout_s": 60.0, "tf32": "off", "batch_order": "pinned",
            "initial_weights": "built once",
        },
        "backends": {"torch": {"status": "ok", "versions": {}, "device": "cpu", "restarts": 0,
                               "wall_time_s": 1.0, "log": "logs/torch.log"}},
        "targets": [{
            "target": "m:f", "name": "f", "description": None, "runs": {"torch": run},
            "divergence": {"torch": {"compared_steps": 2, "max_relative_deviation": 0.0,
                                     "first_divergent_step": 1, "kind": "nonfinite",
                                     "reference_loss": 0.4, "loss": "nan"}},
            "localization": {"step": 1, "reference": "tensorflow", "errors": {},
                             "backends": {"torch": {"stage": "forward", "layer": "dense",
                                                    "detail": "x", "layers": []}}},
            "findings": [{"kind": "nan", "backend": "torch", "message": "x"}],
            "plot": None,
        }],
        "summary": {"findings": {"nan": 1}, "fail_on": ["nan"], "exit_status": 1,
                    "wall_time_s": 3.0, "plots": None},
    }


def test_valid_report_passes():
    assert validate_report(minimal_report()) == []


def test_violations_are_named_with_their_path():
    report = minimal_report()
    del report["settings"]["reference"]
    report["targets"][0]["runs"]["torch"]["steps"] = -1
    report["targets"][0]["runs"]["torch"]["outcome"] = "diverged"
    report["targets"][0]["findings"][0]["extra"] = 1
    report["summary"]["exit_status"] = "1"
    errors = validate_report(report)
    assert "$.settings: missing required key 'reference'" in errors
    assert "$.targets[0].runs.torch.steps: -1 is below the minimum 0" in errors
    assert any(e.startswith("$.targets[0].runs.torch.outcome: 'diverged' is not one of")
               for e in errors)
    assert "$.targets[0].findings[0]: unexpected key 'extra'" in errors
    assert any(e.startswith("$.summary.exit_status") for e in errors)


def test_checker_enforces_types():
    report = copy.deepcopy(minimal_report())
    report["targets"][0]["runs"]["torch"]["losses"] = [0.5, None]
    assert validate_report(report) == [
        "$.targets[0].runs.torch.losses[1]: expected number or string, got NoneType"
    ]
    assert REPORT_SCHEMA["properties"]["schema_version"]["enum"] == [SCHEMA_VERSION]

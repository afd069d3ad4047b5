"""The claim-vs-measured table: what each document claims, and what each backend measured."""

import json

from xstable.scenarios.scenario import BACKENDS, VARIANT_KINDS
from xstable.training import RunResult

__all__ = ["format_outcome", "load_results", "render_claims_table", "render_run_table"]

_CLAIMS = {
    "nan": "NaN",
    "ok": "fix trains",
    "unstable": "risk of instability",
}


def load_results(paths):
    """Reads `RunResult`s from JSON files written by `python -m xstable.scenarios run --out`.

    Args:
        paths: iterable of file paths, one per backend.

    Returns:
        A list of `RunResult`.

    Raises:
        ValueError: If a file holds no list of results.
    """
    results = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, list):
            raise ValueError(
                f"{path} must hold a JSON list of results, as written by "
                f"`python -m xstable.scenarios run --out`. Received: {type(data).__name__}."
            )
        results.extend(_result_from_dict(item) for item in data)
    return results


def _result_from_dict(item):
    result = RunResult.from_dict(item)
    # `RunResult.from_dict` turns every "nan" string into a float, the outcome "nan" and the
    # expected/claimed outcomes in `extra` included; keep those strings as written.
    result.outcome = item["outcome"]
    result.extra = item.get("extra", {})
    return result


def format_outcome(result):
    """One table cell: the outcome with the first non-finite step and where it arose, or the loss.

    Args:
        result: `RunResult` from `xstable.scenarios.run`.

    Returns:
        str, e.g. `"nan @ step 4 (loss)"` or `"ok (loss 1.63)"`.
    """
    if result.outcome == "nan":
        if result.first_nonfinite_step is None:
            text = "nan (weights)"
        else:
            text = f"nan @ step {result.first_nonfinite_step}"
        location = result.extra.get("nan_location")
        if location:
            where = location["stage"]
            if location.get("layer_path"):
                where += f" {location['layer_path']}"
            text += f" ({where})"
        return text
    return f"{result.outcome} (loss {result.final_loss:.3g})"


def render_claims_table(results):
    """Renders results from one or more backends as a markdown claim-vs-measured table.

    One row per scenario and variant; one column per backend. A cell is marked with `!` when
    the measured outcome differs from the outcome recorded in the scenario.

    Args:
        results: iterable of `RunResult` from `xstable.scenarios.run` (any backends).

    Returns:
        str, a markdown table followed by the legend.
    """
    rows = {}
    backends_seen = set()
    versions = {}
    for result in results:
        extra = result.extra
        key = (extra["scenario"], extra["variant"])
        rows.setdefault(key, {"extra": extra, "cells": {}})
        rows[key]["cells"][result.backend] = result
        backends_seen.add(result.backend)
        versions[result.backend] = result.versions.get("backend_version")
    backends = [b for b in BACKENDS if b in backends_seen]
    header = (
        "| Scenario (document, example) | Document's claim | Variant | Origin | "
        + " | ".join(f"{b} {versions.get(b) or ''}".strip() for b in backends)
        + " |"
    )
    lines = [header, "|" + " --- |" * (4 + len(backends))]
    order = {kind: i for i, kind in enumerate(VARIANT_KINDS)}
    scenario_order = []
    for scenario_id, _ in rows:
        if scenario_id not in scenario_order:
            scenario_order.append(scenario_id)
    for scenario_id in scenario_order:
        keys = sorted((k for k in rows if k[0] == scenario_id), key=lambda k: order[k[1]])
        for index, key in enumerate(keys):
            extra = rows[key]["extra"]
            if index == 0:
                label = f"`{scenario_id}` ({extra['document'][:3]}, ex. {extra['example']})"
                claim = f"{_CLAIMS[extra['claimed_outcome']]}: {extra['claim']}"
            else:
                label = claim = ""
            cells = []
            for backend in backends:
                result = rows[key]["cells"].get(backend)
                if result is None:
                    cells.append("not run")
                    continue
                mark = "" if result.extra.get("matches_expected", True) else " !"
                cells.append(format_outcome(result) + mark)
            lines.append(
                f"| {label} | {claim} | {key[1]} | {extra['origin']} | " + " | ".join(cells) + " |"
            )
    lines.append("")
    lines.append(
        "Cells: `nan @ step k (stage)`: first non-finite loss at training step k (0-based), "
        "with the stage of the training step where `locate_nonfinite` found the first "
        "non-finite value; `ok (loss L)`: finite, final loss L (on all training rows) below the "
        "loss of the trivial predictor (the target mean, or the label prior); `stalled`: not "
        "below it; `exploded`: more than 100 x above it. `!` marks an "
        "outcome that differs from the one recorded in the scenario. Origin: `document` (its "
        "code, ported), `derived` (its code without its fix, or its prose fix as code), `ours`."
    )
    return "\n".join(lines)


def render_run_table(results):
    """Renders runs on one backend as a compact markdown table (the examples print it).

    Args:
        results: iterable of `RunResult` from `xstable.scenarios.run`.

    Returns:
        str, a markdown table: scenario, variant, expected and measured outcome, steps run.
    """
    lines = [
        "| Scenario | Variant | Expected | Measured | Steps run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        extra = result.extra
        lines.append(
            f"| {extra['scenario']} | {extra['variant']} | {extra['expected_outcome']} | "
            f"{format_outcome(result)} | {len(result.losses)} |"
        )
    return "\n".join(lines)

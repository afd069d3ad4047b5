"""The comparison report: `report.json` (schema in `report_schema`) and `report.md`."""

import json
import math

from xstable.compare.findings import FINDING_KINDS

__all__ = [
    "run_summary",
    "target_findings",
    "render_verdict",
    "render_markdown",
    "render_html",
    "write_report",
]


def _number(value):
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _float(value):
    return None if value is None else float(value)


def run_summary(record):
    """Reduces one worker record to the `runs` entry of the report.

    Args:
        record: dict, a worker's result file or a failure record of the orchestrator.

    Returns:
        A dict matching the run entry of `REPORT_SCHEMA`, with losses as floats or the strings
        `"nan"`/`"inf"`.
    """
    status = record["status"]
    if status != "completed":
        error = record.get("error") or {}
        return {
            "status": status,
            "outcome": None,
            "steps": 0,
            "first_nonfinite_step": None,
            "nan_onset": None,
            "final_loss": None,
            "losses": [],
            "same_initial_weights": None,
            "compile_mode": None,
            "expected_outcome": None,
            "device": None,
            "wall_time_s": None,
            "error": f"{error.get('type', status)}: {error.get('message', '')}",
            "result_path": None,
        }
    result = record["result"]
    losses = [_number(_float(v)) for v in result["losses"]]
    return {
        "status": status,
        "outcome": result["outcome"],
        "steps": len(losses),
        "first_nonfinite_step": result["first_nonfinite_step"],
        "nan_onset": result["extra"].get("nan_onset"),
        "final_loss": _number(_float(result["final_loss"])),
        "losses": losses,
        "same_initial_weights": record.get("same_initial_weights"),
        "compile_mode": result["extra"].get("compile_mode"),
        "expected_outcome": result["extra"].get("expected_outcome"),
        "dtype_policy": result["extra"].get("dtype_policy"),
        "loss_scale": result["extra"].get("loss_scale"),
        "overflow_onset": result["extra"].get("overflow_onset"),
        "device": result["device"],
        "wall_time_s": result["wall_time_s"],
        "error": result["extra"].get("nan_onset_error"),
        "result_path": record.get("path"),
    }


def _prediction_message(reference, parity):
    worst = max(parity["outputs"], key=lambda o: _sortable(o["max_relative_deviation"]),
                default=None)
    message = f"predictions differ from {reference} on identical weights and inputs"
    if worst is not None:
        message += (f" (output {worst['index']}: max abs {_fmt_dev(worst['max_abs_deviation'])}, "
                    f"max rel {_fmt_dev(worst['max_relative_deviation'])})")
    layer = parity.get("first_layer")
    if layer:
        message += (f"; first layer that differs: `{layer['name']}` ({layer['class']}, "
                    f"rel {_fmt_dev(layer['max_relative_deviation'])})")
    return message


def _sortable(value):
    return float(value) if not isinstance(value, str) else float("inf")


def _stochastic_message(reference, test):
    def number(value):
        return "-" if value is None else (value if isinstance(value, str) else f"{value:.4g}")

    message = (
        f"{test['seeds']} runs per backend (generator seeds): {test['statistic']} "
        f"{number(test['mean'])} (sd {number(test['std'])}) vs {reference} "
        f"{number(test['reference_mean'])} (sd {number(test['reference_std'])}, the A/A spread); "
        f"{test['test']}: p = {number(test['p_value'])} (alpha {test['alpha']:g}) -> "
        f"{test['verdict']}"
    )
    if test["nonfinite_runs"] or test["reference_nonfinite_runs"]:
        message += (f"; non-finite runs: {test['nonfinite_runs']} here, "
                    f"{test['reference_nonfinite_runs']} on {reference}")
    return message


def target_findings(runs, divergence, reference, localization=None, not_compared=None,
                    prediction=None, stochastic=None):
    """Lists the findings of one target (see `xstable.compare.findings.FINDING_KINDS`).

    A divergence whose per-layer check found every part of the step agreeing from identical
    state (stage `none`) is a `drift`: the runs parted through accumulated rounding. A run
    that did not start from the shared initial weights is not compared (`not_compared`:
    backend -> reason) and is reported `unavailable`, never as a divergence or drift. A run
    cut short by an interrupt is no finding (the report's `status` says it).
    """
    located = (localization or {}).get("backends") or {}
    findings = []
    for backend, run in runs.items():
        if run["status"] == "interrupted":
            continue
        if run["status"] == "unavailable":
            findings.append({"kind": "unavailable", "backend": backend, "message": run["error"]})
        elif run["status"] != "completed":
            findings.append({"kind": "error", "backend": backend, "message": run["error"]})
        elif run["outcome"] == "nan":
            onset = run.get("nan_onset") or {}
            where = f" ({onset['stage']}, {onset.get('layer') or '-'})" if onset else ""
            findings.append(
                {
                    "kind": "nan",
                    "backend": backend,
                    "message": f"non-finite at step {run['first_nonfinite_step']}{where}",
                }
            )
    for backend, parity in (prediction or {}).items():
        if parity["differs"]:
            findings.append({"kind": "prediction", "backend": backend,
                             "message": _prediction_message(reference, parity)})
    for backend, test in (stochastic or {}).items():
        if test["verdict"] == "differs":
            findings.append({"kind": "stochastic", "backend": backend,
                             "message": _stochastic_message(reference, test)})
    for backend, reason in (not_compared or {}).items():
        findings.append({"kind": "unavailable", "backend": backend, "message": reason})
    for backend, div in divergence.items():
        if div["first_divergent_step"] is not None:
            location = located.get(backend) or {}
            # Only a check at this backend's own divergent step can clear it of an op difference.
            checked_at = location.get("step", (localization or {}).get("step"))
            drift = location.get("stage") == "none" and checked_at in (
                div["first_divergent_step"],
                div["first_divergent_step"] - 1,
            )
            message = (
                f"loss parts from {reference} at step {div['first_divergent_step']}"
                f" ({div['kind']}: {div['reference_loss']!r} vs {div['loss']!r})"
            )
            if drift:
                message += "; from identical state the step agrees (accumulated rounding)"
            findings.append(
                {"kind": "drift" if drift else "divergence", "backend": backend, "message": message}
            )
    return findings


def _fmt_loss(value):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.4g}"


def _fmt_dev(value):
    if isinstance(value, str):
        return value
    return "-" if value is None else f"{value:.1e}"


def _where(run, location):
    parts = []
    onset = run.get("nan_onset")
    if onset:
        parts.append(f"NaN: {onset['stage']}" + (f" `{onset['layer']}`" if onset["layer"] else ""))
    if location:
        parts.append(
            f"parts: {location['stage']}" + (f" `{location['layer']}`" if location["layer"] else "")
        )
    return "; ".join(parts) or "-"


def render_verdict(report):
    """Returns the verdict block that opens `report.md`, as a list of lines.

    `PASS` when no finding kind in `--fail-on` occurred, `FAIL` when one did, `INTERRUPTED`
    when a signal stopped the run; then every finding kind with its count and whether it
    fails the run.
    """
    summary = report["summary"]
    counts, fail_on = summary["findings"], summary["fail_on"]
    if report.get("status") == "interrupted":
        verdict = f"INTERRUPTED ({summary.get('interrupted', 'signal')})"
    else:
        verdict = "FAIL" if any(counts.get(kind) for kind in fail_on) else "PASS"
    lines = [
        f"## Verdict: {verdict}",
        "",
        f"Exit status {summary['exit_status']}; fails on: {', '.join(fail_on) or 'nothing'}.",
        "",
        "| finding | count | fails the run |",
        "|---|---|---|",
    ]
    for kind in FINDING_KINDS:
        count = counts.get(kind, 0)
        fails = kind in fail_on
        mark = ("**yes**" if count else "yes") if fails else "no"
        lines.append(f"| {kind} | {count} | {mark} |")
    return lines + [""]


def render_markdown(report):
    """Renders the report dict as Markdown: verdict, settings, the target x backend table,
    details."""
    settings = report["settings"]
    tol = settings["tolerances"]
    lines = ["# xstable compare report", "", *render_verdict(report)]
    if report.get("status") == "interrupted":
        lines += [
            f"**Interrupted** ({report['summary'].get('interrupted', 'signal')}): this report "
            "holds what finished before the run was stopped; runs marked `interrupted` did not "
            "finish.",
            "",
        ]
    lines += [
        f"Backends: {', '.join(settings['backends'])} (reference: **{settings['reference']}**), "
        f"device {settings['device']}, TF32 {settings['tf32']}, batch order "
        f"{settings['batch_order']}, initial weights {settings['initial_weights']}.",
        f"A step diverges when |loss - reference| > {tol['loss_atol']:g} + {tol['loss_rtol']:g}"
        f" x max(|loss|, |reference|); layers and gradients are compared on identical state with "
        f"rtol {tol['tensor_rtol']:g}, atol {tol['tensor_atol']:g}.",
        "",
        "| backend | version | device | compile mode | status |",
        "|---|---|---|---|---|",
    ]
    for backend, info in report["backends"].items():
        versions = info["versions"] or {}
        modes = sorted(
            {
                run["compile_mode"]
                for target in report["targets"]
                for b, run in target["runs"].items()
                if b == backend and run.get("compile_mode")
            }
        )
        lines.append(
            f"| {backend} | {versions.get('backend_version') or '-'} | {info['device'] or '-'} | "
            f"{', '.join(modes) or '-'} | {info['status']} |"
        )
    if settings.get("python"):
        lines += ["", "Workers run by another interpreter (`--python`): " + ", ".join(
            f"{backend} `{path}`" for backend, path in settings["python"].items()) + "."]
    lines += _prediction_lines(report)
    if settings.get("mode") == "predict":
        lines += _details_and_summary(report, [])
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "| target | backend | outcome | first non-finite step | stage and layer | final loss "
        "| max rel. loss deviation | first divergent step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target in report["targets"]:
        for backend, run in target["runs"].items():
            div = target["divergence"].get(backend)
            location = None
            if target["localization"]:
                location = target["localization"]["backends"].get(backend)
            outcome = run["outcome"] if run["status"] == "completed" else f"**{run['status']}**"
            expected = run.get("expected_outcome")
            if run["status"] == "completed" and expected and expected != run["outcome"]:
                outcome += f" (expected {expected})"
            noise = target.get("noise_floor")
            if backend == settings["reference"] and noise:
                deviation = f"(reference; A/A {_fmt_dev(noise['max_relative_deviation'])})"
                first = ("-" if noise["first_divergent_step"] is None
                         else f"A/A: **{noise['first_divergent_step']}**")
            elif backend == settings["reference"]:
                deviation, first = "(reference)", "-"
            elif backend in (target.get("stochastic") or {}):
                test = target["stochastic"][backend]
                p_value = "-" if test["p_value"] is None else f"{test['p_value']:.3g}"
                deviation = f"stochastic: p = {p_value}"
                first = f"**{test['verdict']}**" if test["verdict"] == "differs" \
                    else test["verdict"]
            else:
                deviation = _fmt_dev(div["max_relative_deviation"]) if div else "-"
                first = (
                    "-" if not div or div["first_divergent_step"] is None
                    else f"**{div['first_divergent_step']}**"
                )
            step = run["first_nonfinite_step"]
            lines.append(
                f"| {target['target']} | {backend} | {outcome} | "
                f"{'-' if step is None else step} | {_where(run, location)} | "
                f"{_fmt_loss(run['final_loss'])} | {deviation} | {first} |"
            )
    return "\n".join(_details_and_summary(report, lines)) + "\n"


def _prediction_lines(report):
    """The prediction parity table: per target and backend, the largest deviations."""
    reference = report["settings"]["reference"]
    rows = []
    for target in report["targets"]:
        for backend, parity in (target.get("prediction") or {}).items():
            worst_abs = max((o["max_abs_deviation"] for o in parity["outputs"]),
                            key=_sortable, default=None)
            worst_rel = max((o["max_relative_deviation"] for o in parity["outputs"]),
                            key=_sortable, default=None)
            layer = parity.get("first_layer")
            rows.append(
                f"| {target['target']} | {backend} | {parity['rows']} | "
                f"{len(parity['outputs'])} | {_fmt_dev(worst_abs)} | {_fmt_dev(worst_rel)} | "
                f"{'**differs**' if parity['differs'] else 'same'} | "
                f"{'`' + layer['name'] + '` (' + layer['class'] + ')' if layer else '-'} |"
            )
        for backend, error in (target.get("prediction_errors") or {}).items():
            rows.append(f"| {target['target']} | {backend} | - | - | - | - | "
                        f"unavailable: {error} | - |")
    if not rows:
        return []
    tol = report["settings"]["tolerances"]
    return [
        "",
        f"Prediction parity (inference mode, from the shared initial weights, vs {reference}; "
        f"an output differs when max|a - b| > {tol['tensor_atol']:g} + "
        f"{tol['tensor_rtol']:g} x max|a|; relative = max|a - b| / max|a|):",
        "",
        "| target | backend | rows | outputs | max abs deviation | max rel. deviation "
        "| verdict | first layer that differs |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _details_and_summary(report, lines):
    lines = list(lines)
    details = []
    for target in report["targets"]:
        items = []
        for finding in target["findings"]:
            items.append(f"- {finding['kind']} on {finding['backend']}: {finding['message']}")
        for backend, run in target["runs"].items():
            scale = run.get("loss_scale")
            if scale:
                steps = scale["overflow_steps"]
                shown = ", ".join(str(s) for s in steps[:20]) + (" ..." if len(steps) > 20 else "")
                items.append(
                    f"- {run.get('dtype_policy') or 'mixed'} on {backend}: loss scale "
                    f"{scale['initial']:g} -> {scale['final']:g}; "
                    + (f"gradients overflowed (update skipped, scale halved) at {len(steps)} "
                       f"step(s): {shown}" if steps else "no gradient overflow")
                )
                onset = run.get("overflow_onset")
                if onset:
                    where = onset["stage"] + (f" `{onset['layer']}`" if onset["layer"] else "")
                    items.append(f"  - first overflow, step {onset['step']} on {backend}: "
                                 f"{where}: {onset['detail']}")
        stochastic = target.get("stochastic") or {}
        if stochastic:
            layers = next(iter(stochastic.values())).get("layers") or []
            items.append(
                f"- stochastic layers ({', '.join(f'`{n}`' for n in layers) or '-'}): "
                "dropout and noise draw from each backend's own generator, so the runs are "
                "compared statistically, not step by step"
            )
            for backend, test in stochastic.items():
                if test["verdict"] != "differs":
                    items.append(f"- {backend}: " + _stochastic_message(
                        report["settings"]["reference"], test))
        noise = target.get("noise_floor")
        if noise:
            line = (
                f"- A/A noise floor on {noise['backend']}: two identical runs part by at most "
                f"{_fmt_dev(noise['max_relative_deviation'])} over {noise['compared_steps']} steps"
            )
            if noise["first_divergent_step"] is not None:
                line += (
                    f"; beyond the tolerance from step {noise['first_divergent_step']}: the "
                    "reference is not deterministic run to run, so cross-backend differences "
                    "of that size are noise"
                )
            items.append(line)
        localization = target["localization"]
        if localization:
            for backend, location in localization["backends"].items():
                items.append(
                    f"- at step {location.get('step', localization['step'])}, {backend} vs "
                    f"{localization['reference']}: "
                    f"{location['detail']}"
                )
            for backend, error in localization["errors"].items():
                items.append(f"- per-layer comparison unavailable on {backend}: {error}")
        if target.get("plot"):
            items.append(f"- plot: `{target['plot']}`")
        if items:
            details += ["", f"### {target['target']}", "", *items]
    summary = report["summary"]
    counts = ", ".join(f"{k}: {v}" for k, v in summary["findings"].items()) or "none"
    lines += [
        "",
        f"Findings: {counts}. Fails on: {', '.join(summary['fail_on']) or 'nothing'} "
        f"-> exit status {summary['exit_status']}. Wall time {summary['wall_time_s']:.1f}s.",
    ]
    if summary.get("plots"):
        lines.append(summary["plots"])
    if details:
        lines += ["", "## Details", *details]
    return lines


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.verdict{font-size:2em;font-weight:bold;padding:.4em .8em;border-radius:6px;color:#fff}
.PASS{background:#2e7d32}.FAIL{background:#c62828}.INTERRUPTED{background:#ef6c00}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
.bad{color:#c62828;font-weight:bold}.target{border-top:2px solid #ddd;margin-top:1.5em}
img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:0 .2em}
"""


def _verdict_word(report):
    if report.get("status") == "interrupted":
        return "INTERRUPTED"
    counts, fail_on = report["summary"]["findings"], report["summary"]["fail_on"]
    return "FAIL" if any(counts.get(kind) for kind in fail_on) else "PASS"


def _cell(value):
    import html

    return f"<td>{html.escape(str(value))}</td>"


def render_html(report, images=None):
    """Renders the report as one self-contained HTML page: the verdict first, then the
    findings, settings and, per target, its tables and loss plot (embedded as base64 PNG).

    Args:
        report: dict, the report.
        images: dict target -> PNG bytes of its loss plot (missing targets get none).
    """
    import base64
    import html

    images = images or {}
    esc = html.escape
    summary, settings = report["summary"], report["settings"]
    word = _verdict_word(report)
    counts, fail_on = summary["findings"], summary["fail_on"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>xstable compare report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<div class='verdict {word}'>{word}</div>",
        f"<p>Exit status {summary['exit_status']}; fails on: "
        f"{esc(', '.join(fail_on) or 'nothing')}. Backends "
        f"{esc(', '.join(settings['backends']))}, reference <b>{esc(settings['reference'])}</b>, "
        f"mode {esc(settings.get('mode') or 'train')}, device {esc(settings['device'])}.</p>",
        "<table><tr><th>finding</th><th>count</th><th>fails the run</th></tr>",
    ]
    for kind in FINDING_KINDS:
        count = counts.get(kind, 0)
        bad = " class='bad'" if count and kind in fail_on else ""
        parts.append(f"<tr><td{bad}>{kind}</td><td{bad}>{count}</td>"
                     f"<td>{'yes' if kind in fail_on else 'no'}</td></tr>")
    parts.append("</table>")
    failing = [(t["target"], f) for t in report["targets"] for f in t["findings"]
               if f["kind"] in fail_on]
    if failing:
        parts.append("<h2>What fails</h2><ul>")
        parts += [f"<li><code>{esc(t)}</code>: <b>{esc(f['kind'])}</b> on {esc(f['backend'])}: "
                  f"{esc(f['message'])}</li>" for t, f in failing]
        parts.append("</ul>")
    parts.append("<h2>Backends</h2><table><tr><th>backend</th><th>version</th><th>device</th>"
                 "<th>status</th></tr>")
    for backend, info in report["backends"].items():
        version = (info.get("versions") or {}).get("backend_version") or "-"
        parts.append(f"<tr>{_cell(backend)}{_cell(version)}{_cell(info['device'] or '-')}"
                     f"{_cell(info['status'])}</tr>")
    parts.append("</table><h2>Targets</h2>")
    reference = settings["reference"]
    for target in report["targets"]:
        name = target["target"]
        parts.append(f"<div class='target'><h3><code>{esc(name)}</code></h3>")
        if target.get("description"):
            parts.append(f"<p>{esc(target['description'])}</p>")
        parts.append("<table><tr><th>backend</th><th>status / outcome</th><th>final loss</th>"
                     "<th>max rel. loss deviation</th><th>first divergent step / verdict</th>"
                     "<th>predictions (step 0)</th></tr>")
        for backend, run in target["runs"].items():
            outcome = run["outcome"] if run["status"] == "completed" else run["status"]
            div = target["divergence"].get(backend)
            test = (target.get("stochastic") or {}).get(backend)
            parity = (target.get("prediction") or {}).get(backend)
            if backend == reference:
                deviation, verdict = "(reference)", "-"
            elif test:
                p_value = "-" if test["p_value"] is None else f"{test['p_value']:.3g}"
                deviation, verdict = f"stochastic, p = {p_value}", test["verdict"]
            elif div:
                deviation = _fmt_dev(div["max_relative_deviation"])
                verdict = "-" if div["first_divergent_step"] is None \
                    else f"step {div['first_divergent_step']}"
            else:
                deviation, verdict = "-", "-"
            if parity:
                worst = max((o["max_relative_deviation"] for o in parity["outputs"]),
                            key=_sortable, default=None)
                layer = parity.get("first_layer")
                predicted = ("differs" if parity["differs"] else "same") + \
                    f" (rel {_fmt_dev(worst)})" + (f", first at {layer['name']}" if layer else "")
            else:
                predicted = "(reference)" if backend == reference else "-"
            parts.append(f"<tr>{_cell(backend)}{_cell(outcome)}"
                         f"{_cell(_fmt_loss(run['final_loss']))}{_cell(deviation)}"
                         f"{_cell(verdict)}{_cell(predicted)}</tr>")
        parts.append("</table>")
        if target["findings"]:
            parts.append("<ul>" + "".join(
                f"<li><b>{esc(f['kind'])}</b> on {esc(f['backend'])}: {esc(f['message'])}</li>"
                for f in target["findings"]) + "</ul>")
        if name in images:
            encoded = base64.b64encode(images[name]).decode("ascii")
            parts.append(f"<img alt='loss per step and deviation from {esc(reference)}' "
                         f"src='data:image/png;base64,{encoded}'>")
        parts.append("</div>")
    parts.append(f"<p>Wall time {summary['wall_time_s']:.1f}s. Everything in "
                 "<code>report.json</code>; the same in Markdown in <code>report.md</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(report, out, images=None):
    """Writes `report.json`, `report.md` and `report.html` and returns their paths.

    Args:
        report: dict, the report.
        out: `xstable.compare.output.OutputFolder`, or a folder path (opened as one): each
            file is written atomically, replacing (never writing through) a symlink.
        images: dict target -> PNG bytes, embedded in `report.html`.
    """
    from xstable.compare.output import OutputFolder

    if isinstance(out, OutputFolder):
        return _write_files(report, out, images)
    with OutputFolder(out) as folder:
        return _write_files(report, folder, images)


def _write_files(report, folder, images=None):
    json_path = folder.write_text("report.json", json.dumps(report, indent=1, allow_nan=False))
    md_path = folder.write_text("report.md", render_markdown(report))
    folder.write_text("report.html", render_html(report, images))
    return json_path, md_path

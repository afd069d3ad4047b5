"""The summary table: failure, document fix and xstable fix of every scenario, per backend."""

import math

from xstable.scenarios.scenario import BACKENDS

__all__ = [
    "SUMMARY_KINDS",
    "NOISE_MARGIN",
    "compare_to_document",
    "render_compact_table",
    "render_summary_table",
    "replace_marked_block",
]

SUMMARY_KINDS = ("failure", "stress", "document_fix", "xstable_fix")
_KIND_LABELS = {
    "failure": "failure",
    "stress": "stress (ours)",
    "document_fix": "document fix",
    "xstable_fix": "xstable fix",
}
_BACKEND_LABELS = {"tensorflow": "TensorFlow", "torch": "PyTorch", "jax": "JAX"}
# An xstable fix within this relative margin above the document fix counts as level with it
# (said as such, not as "at or below").
NOISE_MARGIN = 0.05


def _relative(result):
    """Final loss over the trivial loss, or None when it cannot be had."""
    trivial = result.trivial_loss
    if result.outcome == "nan" or not trivial or not math.isfinite(result.final_loss):
        return None
    return result.final_loss / trivial


def _cell(result):
    if result is None:
        return "not run"
    if result.outcome == "nan":
        step = result.first_nonfinite_step
        return "nan (weights)" if step is None else f"nan @ step {step}"
    relative = _relative(result)
    text = f"{result.outcome} {result.final_loss:.3g}"
    if relative is not None:
        text += f" ({relative:.3g}x)"
    return f"**{text}**" if result.extra.get("variant") == "xstable_fix" else text


def compare_to_document(xstable_result, document_result):
    """Says whether an xstable fix ends at or below its document fix, relative to the trivial loss.

    The two may train with different losses (a document that switches BCE for MSE), so their
    final losses are compared as multiples of their own trivial losses.

    Args:
        xstable_result: `RunResult` of the `xstable_fix` variant.
        document_result: `RunResult` of the `document_fix` variant, same backend.

    Returns:
        str: `"yes"`, `"within 5 %"` (above, by at most `NOISE_MARGIN`), or `"no"`.
    """
    mine, theirs = _relative(xstable_result), _relative(document_result)
    if mine is None:
        return "no"
    if theirs is None or mine <= theirs:
        return "yes"
    return "within 5 %" if mine <= theirs * (1.0 + NOISE_MARGIN) else "no"


def _index_results(results):
    """Returns `(cells, scenario order, backends)`; cells keyed by (scenario, variant, backend)."""
    cells, order, seen = {}, [], set()
    for result in results:
        scenario = result.extra["scenario"]
        if scenario not in order:
            order.append(scenario)
        cells[(scenario, result.extra["variant"], result.backend)] = result
        seen.add(result.backend)
    return cells, order, [b for b in BACKENDS if b in seen]


def render_summary_table(results):
    """Renders the summary table of results from one or more backends, as markdown.

    One block of rows per scenario (failure, stress, document fix, xstable fix), one column
    per backend: the outcome, the final loss on all training rows and, in parentheses, that
    loss as a multiple of the trivial predictor's. A last row per scenario says whether the
    xstable fix ends at or below the document fix on each backend.

    Args:
        results: iterable of `RunResult` from `xstable.scenarios.run` (any backends).

    Returns:
        str, a markdown table followed by its legend.
    """
    from xstable.scenarios.registry import get_scenario

    cells, order, backends = _index_results(results)
    lines = [
        "| Scenario | Variant | " + " | ".join(_BACKEND_LABELS[b] for b in backends) + " |",
        "| --- | --- |" + " --- |" * len(backends),
    ]
    for scenario in order:
        first = True
        for kind in SUMMARY_KINDS:
            row = [cells.get((scenario, kind, backend)) for backend in backends]
            if all(r is None for r in row):
                continue
            label = f"`{scenario}`" if first else ""
            first = False
            lines.append(
                f"| {label} | {_KIND_LABELS[kind]} | " + " | ".join(_cell(r) for r in row) + " |"
            )
        verdicts = []
        for backend in backends:
            mine = cells.get((scenario, "xstable_fix", backend))
            theirs = cells.get((scenario, "document_fix", backend))
            verdicts.append(
                "" if mine is None or theirs is None else compare_to_document(mine, theirs)
            )
        if any(verdicts):
            lines.append(
                "| | xstable fix at or below document fix? | " + " | ".join(verdicts) + " |"
            )
    notes = [(s, get_scenario(s).xstable_fix_note) for s in order]
    lines += [""] + [f"- `{s}`: {note}" for s, note in notes if note]
    lines += [
        "",
        "Outcome and final loss (mean loss on all training rows after training), with that loss "
        "as a multiple of the trivial predictor's (predicting the target mean, or the label "
        "prior, under the same loss): `ok` below 1x (the model learned), `stalled` at or "
        "above 1x, `exploded` above 100x, `nan @ step k` non-finite from training step k. "
        "Fixes trained with another loss than their failure are compared by that multiple. "
        "`within 5 %`: the xstable fix ends above the document fix by at most 5 %.",
    ]
    return "\n".join(lines)


_COMPACT_KINDS = ("failure", "document_fix", "xstable_fix")
# Final losses this close on every backend are shown once.
_SAME_LOSS = 1e-3


def _plain_cell(result):
    if result.outcome == "nan":
        step = result.first_nonfinite_step
        return "nan" if step is None else f"nan @ {step}"
    relative = _relative(result)
    text = f"{result.outcome} {result.final_loss:.3g}"
    return text if relative is None else f"{text} ({relative:.3g}x)"


def _agreeing_cell(row):
    """One cell for all backends when they agree in outcome and loss, else one per backend."""
    present = [r for r in row if r is not None]
    if not present:
        return "-"
    same_outcome = len({r.outcome for r in present}) == 1
    losses = [r.final_loss for r in present]
    finite = all(math.isfinite(v) for v in losses)
    spread = (max(losses) - min(losses)) / max(abs(max(losses)), 1e-30) if finite else 0.0
    if same_outcome and spread <= _SAME_LOSS and len(present) == len(row):
        return _plain_cell(present[0])
    return " / ".join("not run" if r is None else _plain_cell(r) for r in row)


def render_compact_table(results):
    """README's table: one row per scenario, failure / document fix / xstable fix.

    A cell shows the outcome and final loss (as a multiple of the trivial loss) once where
    every backend agrees, else `TensorFlow / PyTorch / JAX`. An xstable fix that ends above
    its document fix (`compare_to_document` says `"no"`) on some backend says so in its cell,
    naming the backends when not all.

    Args:
        results: iterable of `RunResult` from `xstable.scenarios.run` (any backends).

    Returns:
        str, a markdown table.
    """
    cells, order, backends = _index_results(results)
    lines = [
        "| scenario | failure | document fix | xstable fix |",
        "| --- | --- | --- | --- |",
    ]
    for scenario in order:
        row = [
            _agreeing_cell([cells.get((scenario, kind, b)) for b in backends])
            for kind in _COMPACT_KINDS
        ]
        if row[2] != "-":
            row[2] = f"**{row[2]}**" + _above_document_mark(cells, scenario, backends)
        lines.append(f"| `{scenario}` | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _above_document_mark(cells, scenario, backends):
    """`" (above the document fix)"`, with the backends when not all, or `""`."""
    above = []
    for backend in backends:
        mine = cells.get((scenario, "xstable_fix", backend))
        theirs = cells.get((scenario, "document_fix", backend))
        if mine is not None and theirs is not None and compare_to_document(mine, theirs) == "no":
            above.append(backend)
    if not above:
        return ""
    if len(above) == len(backends):
        return " (above the document fix)"
    return f" (above the document fix on {', '.join(_BACKEND_LABELS[b] for b in above)})"


def replace_marked_block(text, name, block):
    """Replaces what stands between `<!-- name -->` and `<!-- /name -->` in `text`.

    Raises:
        ValueError: if the markers are missing.
    """
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        raise ValueError(f"The text has no `{start}` ... `{end}` block to replace.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"

"""Where two backends' training runs part ways: per-step losses, then layer by layer.

Pure NumPy: runs in the orchestrator, which imports no backend.
"""

import math

from xstable.compare.tolerances import (
    DEFAULT_TOLERANCES,
    relative_deviation,
    tensor_deviation,
    tensors_differ,
)

__all__ = [
    "loss_divergence",
    "localize_divergence",
    "prediction_parity",
    "run_statistic",
    "stochastic_comparison",
]


def loss_divergence(reference_losses, other_losses, tolerances=DEFAULT_TOLERANCES):
    """Compares two runs' per-step losses and finds the first step past the tolerance.

    Steps are compared up to the shorter run (a run stops at its first non-finite loss). A
    step where exactly one loss is non-finite is a divergence of kind `"nonfinite"`; a step
    where both are non-finite ends the comparison without one (both runs failed there).

    Args:
        reference_losses: list of float, the reference backend's losses.
        other_losses: list of float, another backend's losses.
        tolerances: `Tolerances`.

    Returns:
        A dict: `compared_steps` (int), `max_relative_deviation` (float over the steps where
        both losses are finite, `|a-b|/max(|a|,|b|)`), `first_divergent_step` (int or `None`),
        `kind` (`"loss"`, `"nonfinite"` or `None`), and the two losses at that step
        (`reference_loss`, `loss`; `None` without a divergence).

    Example:

    >>> loss_divergence([1.0, 0.5, 0.25], [1.0, 0.5, 0.3])["first_divergent_step"]
    2
    """
    compared = min(len(reference_losses), len(other_losses))
    worst = 0.0
    first = None
    for step in range(compared):
        a, b = float(reference_losses[step]), float(other_losses[step])
        finite = math.isfinite(a) and math.isfinite(b)
        if finite:
            worst = max(worst, relative_deviation(a, b))
        if first is None and tolerances.losses_differ(a, b):
            first = step
        if not (math.isfinite(a) or math.isfinite(b)):
            compared = step + 1
            break
    kind = None
    ref_loss = other_loss = None
    if first is not None:
        ref_loss, other_loss = float(reference_losses[first]), float(other_losses[first])
        kind = "loss" if math.isfinite(ref_loss) and math.isfinite(other_loss) else "nonfinite"
    return {
        "compared_steps": compared,
        "max_relative_deviation": worst,
        "first_divergent_step": first,
        "kind": kind,
        "reference_loss": ref_loss,
        "loss": other_loss,
    }


def _outputs_differ(tolerances, reference, other):
    worst = 0.0
    differs = len(reference) != len(other)
    for a, b in zip(reference, other):
        d, deviation = tensors_differ(tolerances, a, b)
        differs = differs or d
        worst = max(worst, deviation)
    return differs, worst


def localize_divergence(reference, other, tolerances=DEFAULT_TOLERANCES):
    """Names the stage and layer where two backends part ways on identical state and data.

    Both inspections (`xstable.compare.inspection.inspect_state`) start from the same weights,
    optimizer state and batch, so any difference comes from the step itself. Stages are checked
    in the order they run: forward outputs layer by layer, the loss, the gradients from the
    output layer back, the compiled train step's loss, and the updated weights.

    Args:
        reference: dict, the reference backend's inspection.
        other: dict, another backend's inspection of the same state.
        tolerances: `Tolerances`.

    Returns:
        A dict with `stage` (`"forward"`, `"loss"`, `"backward"`, `"train_step"`,
        `"update"` or `"none"`), `layer` (name or `None`), `detail` (one sentence), `layers`
        (per-layer `{"name", "class", "forward_deviation", "gradient_deviation"}`),
        `loss_reference`, `loss` and `notes`.
    """
    found = None
    layers = []
    notes = list(other.get("notes", []))
    if [r["class"] for r in reference["layers"]] != [r["class"] for r in other["layers"]] or len(
        reference["gradients"]
    ) != len(other["gradients"]):
        notes.append("the models differ in layers or variables; compared what lines up")
    gradient_scale = max(
        (float(abs(g["value"]).max()) for g in reference["gradients"] if g["value"].size),
        default=0.0,
    )
    if not math.isfinite(gradient_scale):
        gradient_scale = 0.0
    # Layers, gradients and weights line up by position: each backend names its own layers
    # (names carry counters), and the reference's names are the ones reported.
    gradient_deviation = []
    gradient_differs = []
    for ref, g in zip(reference["gradients"], other["gradients"]):
        deviation, difference, _ = tensor_deviation(ref["value"], g["value"])
        limit = tolerances.tensor_atol + tolerances.tensor_rtol * gradient_scale
        gradient_differs.append(difference > limit)
        gradient_deviation.append(
            difference / gradient_scale if gradient_scale > 0 and math.isfinite(difference)
            else deviation
        )

    for ref, record in zip(reference["layers"], other["layers"]):
        differs, deviation = _outputs_differ(tolerances, ref["outputs"], record["outputs"])
        grads = [
            d for g, d in zip(reference["gradients"], gradient_deviation)
            if g["layer"] == ref["name"]
        ]
        layers.append(
            {
                "name": ref["name"],
                "class": ref["class"],
                "forward_deviation": deviation,
                "gradient_deviation": max(grads) if grads else None,
            }
        )
        if found is None and differs:
            found = {
                "stage": "forward",
                "layer": ref["name"],
                "detail": f"layer {ref['name']} ({ref['class']}) gives different outputs "
                f"from identical inputs and weights ({_describe(deviation)})",
            }
    if found is None and tolerances.losses_differ(reference["loss"], other["loss"]):
        found = {
            "stage": "loss",
            "layer": None,
            "detail": f"every layer output agrees; the loss differs ({reference['loss']:.6g} "
            f"on the reference, {other['loss']:.6g} here)",
        }
    if found is None:
        for index in reversed(range(len(gradient_differs))):
            if gradient_differs[index]:
                g = reference["gradients"][index]
                found = {
                    "stage": "backward",
                    "layer": g["layer"],
                    "detail": f"forward pass and loss agree; the gradient of {g['path']} differs "
                    f"({_describe(gradient_deviation[index], 'of the largest gradient')})",
                }
                break
    has_update = reference["train_loss"] is not None and other["train_loss"] is not None
    if (
        found is None
        and has_update
        and tolerances.losses_differ(reference["train_loss"], other["train_loss"])
    ):
        found = {
            "stage": "train_step",
            "layer": None,
            "detail": "the eager forward pass agrees, the compiled train step's loss differs "
            f"({reference['train_loss']:.6g} vs {other['train_loss']:.6g})",
        }
    if found is None:
        for ref, w in zip(reference["updated_weights"], other["updated_weights"]):
            differs, deviation = tensors_differ(tolerances, ref["value"], w["value"])
            if differs:
                found = {
                    "stage": "update",
                    "layer": _layer(ref["path"]),
                    "detail": f"forward pass and gradients agree; the optimizer update of "
                    f"{ref['path']} differs ({_describe(deviation)})",
                }
                break
    if found is None:
        found = {
            "stage": "none",
            "layer": None,
            "detail": "from identical state the step agrees within tolerance: the runs drifted "
            "apart through accumulated rounding in earlier steps",
        }
    return {
        **found,
        "layers": layers,
        "loss_reference": reference["loss"],
        "loss": other["loss"],
        "notes": notes,
    }


def _describe(deviation, scale="relative"):
    if math.isinf(deviation):
        return "non-finite on one backend, finite on the other"
    return f"deviation {deviation:.2e} {scale}"


def _layer(path):
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else path


def prediction_parity(reference, other, tolerances=DEFAULT_TOLERANCES):
    """Compares two backends' predictions from the same weights on the same inputs.

    Args:
        reference: dict from `xstable.compare.inspection.prediction_record` on the reference
            backend (`outputs`, `layers`, `rows`, `layer_rows`).
        other: the same from another backend.
        tolerances: `Tolerances`; an output or layer differs when
            `max|a - b| > tensor_atol + tensor_rtol * max|a|`.

    Returns:
        A dict: `differs` (bool), `rows` (int), `outputs` (per model output: `index`, `shape`,
        `max_abs_deviation`, `max_relative_deviation` = `max|a - b| / max|a|`, `differs`),
        `first_layer` (the first layer, in model order, whose output differs:
        `name`, `class` and its deviations; `None` if none does or no per-layer outputs
        exist) and `notes`.

    Example:

    >>> import numpy as np
    >>> a = {"outputs": [np.array([1.0, 2.0])], "layers": [], "rows": 2}
    >>> prediction_parity(a, {"outputs": [np.array([1.0, 2.5])], "layers": [], "rows": 2})["differs"]
    True
    """
    outputs = []
    ref_outputs, other_outputs = list(reference["outputs"]), list(other["outputs"])
    notes = list(other.get("notes") or [])
    if len(ref_outputs) != len(other_outputs):
        notes.append(f"{len(other_outputs)} outputs here, {len(ref_outputs)} on the reference")
    for index, (a, b) in enumerate(zip(ref_outputs, other_outputs)):
        differs, deviation = tensors_differ(tolerances, a, b)
        _, difference, _ = tensor_deviation(a, b)
        outputs.append({
            "index": index,
            "shape": [int(n) for n in getattr(a, "shape", ())],
            "max_abs_deviation": difference,
            "max_relative_deviation": deviation,
            "differs": bool(differs),
        })
    first_layer = None
    ref_layers, other_layers = reference.get("layers") or [], other.get("layers") or []
    if ref_layers and len(ref_layers) != len(other_layers):
        notes.append(f"{len(other_layers)} layers here, {len(ref_layers)} on the reference: "
                     "layers matched by position up to the shorter")
    for ref_layer, layer in zip(ref_layers, other_layers):
        pairs = list(zip(ref_layer["outputs"], layer["outputs"]))
        verdicts = [tensors_differ(tolerances, a, b) for a, b in pairs]
        if any(d for d, _ in verdicts):
            first_layer = {
                "name": ref_layer["name"],
                "class": ref_layer["class"],
                "max_abs_deviation": max(tensor_deviation(a, b)[1] for a, b in pairs),
                "max_relative_deviation": max(dev for _, dev in verdicts),
            }
            break
    return {
        "differs": any(o["differs"] for o in outputs) or len(ref_outputs) != len(other_outputs),
        "rows": int(other.get("rows", 0)),
        "layer_rows": int(other.get("layer_rows", 0)),
        "outputs": outputs,
        "first_layer": first_layer,
        "notes": notes,
    }


STOCHASTIC_ALPHA = 0.05
_EXACT_PERMUTATIONS = 20000
_SAMPLED_PERMUTATIONS = 10000


def run_statistic(losses):
    """The number one stochastic run is judged by: its mean loss over the last half of its steps.

    Averaging the second half is less noisy than the final loss alone, and still says where
    the training got to. A run with a non-finite loss gives `nan`.
    """
    values = [float(v) for v in losses]
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan
    tail = values[len(values) // 2:]
    return sum(tail) / len(tail)


def _permutation_p_value(a, b):
    """Two-sided p-value of the difference of means, by permuting the pooled runs."""
    import itertools

    import numpy as np

    pooled = np.asarray(a + b, dtype=np.float64)
    n, total = len(a), len(a) + len(b)
    observed = abs(np.mean(a) - np.mean(b))
    tolerance = 1e-12 * max(1.0, float(np.max(np.abs(pooled))))
    if math.comb(total, n) <= _EXACT_PERMUTATIONS:
        splits = (list(c) for c in itertools.combinations(range(total), n))
        count = hits = 0
        for chosen in splits:
            mask = np.zeros(total, dtype=bool)
            mask[chosen] = True
            hits += abs(pooled[mask].mean() - pooled[~mask].mean()) >= observed - tolerance
            count += 1
        return hits / count, "exact"
    rng = np.random.default_rng(0)
    hits = 1  # the observed split itself
    for _ in range(_SAMPLED_PERMUTATIONS):
        order = rng.permutation(total)
        hits += abs(pooled[order[:n]].mean() - pooled[order[n:]].mean()) >= observed - tolerance
    return hits / (_SAMPLED_PERMUTATIONS + 1), f"{_SAMPLED_PERMUTATIONS} random permutations"


def _welch_t(a, b):
    import numpy as np

    va = np.var(a, ddof=1) / len(a) if len(a) > 1 else 0.0
    vb = np.var(b, ddof=1) / len(b) if len(b) > 1 else 0.0
    if va + vb == 0:
        return 0.0 if np.mean(a) == np.mean(b) else math.inf
    return float((np.mean(b) - np.mean(a)) / math.sqrt(va + vb))


def stochastic_comparison(reference_runs, other_runs, alpha=STOCHASTIC_ALPHA):
    """Compares two backends' repeated runs of a model with dropout or noise, statistically.

    Each run is reduced to `run_statistic` (mean loss over the last half of its steps). The
    two samples are compared with a two-sided permutation test on the difference of their
    means (exact over every split of the pooled runs when there are few). `differs` when
    `p < alpha`, or when runs of one backend reach non-finite losses and none of the other's
    do; otherwise `indistinguishable`. The spread of the reference's own runs (A/A, same
    weights and batches, other generator seeds) is given for scale.

    Args:
        reference_runs: list of per-step loss lists, one per generator seed, reference backend.
        other_runs: the same for another backend.
        alpha: float, significance level.

    Returns:
        A dict: `verdict`, `test`, `statistic`, `alpha`, `p_value`, `welch_t`, `seeds`
        (runs per backend), `reference_mean`, `mean`, `reference_std` (the A/A spread),
        `std`, `difference` (mean - reference mean), `nonfinite_runs` and
        `reference_nonfinite_runs`.

    Example:

    >>> ref = [[1.0, 0.5 + 0.01 * i] for i in range(5)]
    >>> stochastic_comparison(ref, [[1.0, 0.9 + 0.01 * i] for i in range(5)])["verdict"]
    'differs'
    """
    import numpy as np

    ref = [run_statistic(r) for r in reference_runs]
    other = [run_statistic(r) for r in other_runs]
    ref_finite = [v for v in ref if math.isfinite(v)]
    other_finite = [v for v in other if math.isfinite(v)]
    result = {
        "test": "permutation test, two-sided, difference of means",
        "statistic": "mean loss over the last half of the steps, per run",
        "alpha": alpha,
        "seeds": min(len(ref), len(other)),
        "reference_mean": float(np.mean(ref_finite)) if ref_finite else None,
        "mean": float(np.mean(other_finite)) if other_finite else None,
        "reference_std": float(np.std(ref_finite, ddof=1)) if len(ref_finite) > 1 else None,
        "std": float(np.std(other_finite, ddof=1)) if len(other_finite) > 1 else None,
        "reference_nonfinite_runs": len(ref) - len(ref_finite),
        "nonfinite_runs": len(other) - len(other_finite),
        "p_value": None,
        "welch_t": None,
        "difference": None,
        "permutations": None,
    }
    if len(ref_finite) >= 2 and len(other_finite) >= 2:
        p_value, permutations = _permutation_p_value(ref_finite, other_finite)
        result.update(
            p_value=float(p_value),
            permutations=permutations,
            welch_t=_welch_t(ref_finite, other_finite),
            difference=result["mean"] - result["reference_mean"],
        )
    one_sided_nan = (result["nonfinite_runs"] > 0) != (result["reference_nonfinite_runs"] > 0)
    significant = result["p_value"] is not None and result["p_value"] < alpha
    result["verdict"] = "differs" if significant or one_sided_nan else "indistinguishable"
    return result

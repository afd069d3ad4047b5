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

__all__ = ["loss_divergence", "localize_divergence"]


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
    ref_layers = {r["name"]: r for r in reference["layers"]}
    gradient_scale = max(
        (float(abs(g["value"]).max()) for g in reference["gradients"] if g["value"].size),
        default=0.0,
    )
    if not math.isfinite(gradient_scale):
        gradient_scale = 0.0
    ref_gradients = {g["path"]: g for g in reference["gradients"]}
    gradient_deviation = {}
    gradient_differs = {}
    for g in other["gradients"]:
        ref = ref_gradients.get(g["path"])
        if ref is None:
            continue
        deviation, difference, _ = tensor_deviation(ref["value"], g["value"])
        limit = tolerances.tensor_atol + tolerances.tensor_rtol * gradient_scale
        gradient_differs[g["path"]] = difference > limit
        gradient_deviation[g["path"]] = (
            difference / gradient_scale if gradient_scale > 0 and math.isfinite(difference)
            else deviation
        )

    for record in other["layers"]:
        ref = ref_layers.get(record["name"])
        if ref is None:
            continue
        differs, deviation = _outputs_differ(tolerances, ref["outputs"], record["outputs"])
        grads = [v for p, v in gradient_deviation.items() if _layer(p) == record["name"]]
        layers.append(
            {
                "name": record["name"],
                "class": record["class"],
                "forward_deviation": deviation,
                "gradient_deviation": max(grads) if grads else None,
            }
        )
        if found is None and differs:
            found = {
                "stage": "forward",
                "layer": record["name"],
                "detail": f"layer {record['name']} ({record['class']}) gives different outputs "
                f"from identical inputs and weights (relative deviation {deviation:.2e})",
            }
    if found is None and tolerances.losses_differ(reference["loss"], other["loss"]):
        found = {
            "stage": "loss",
            "layer": None,
            "detail": f"every layer output agrees; the loss differs ({reference['loss']:.6g} "
            f"on the reference, {other['loss']:.6g} here)",
        }
    if found is None:
        for g in reversed(other["gradients"]):
            if gradient_differs.get(g["path"]):
                found = {
                    "stage": "backward",
                    "layer": g["layer"],
                    "detail": f"forward pass and loss agree; the gradient of {g['path']} differs "
                    f"(deviation {gradient_deviation[g['path']]:.2e} of the largest gradient)",
                }
                break
    if found is None and tolerances.losses_differ(reference["train_loss"], other["train_loss"]):
        found = {
            "stage": "train_step",
            "layer": None,
            "detail": "the eager forward pass agrees, the compiled train step's loss differs "
            f"({reference['train_loss']:.6g} vs {other['train_loss']:.6g})",
        }
    if found is None:
        ref_updated = {w["path"]: w["value"] for w in reference["updated_weights"]}
        for w in other["updated_weights"]:
            if w["path"] in ref_updated:
                differs, deviation = tensors_differ(tolerances, ref_updated[w["path"]], w["value"])
                if differs:
                    found = {
                        "stage": "update",
                        "layer": _layer(w["path"]),
                        "detail": f"forward pass and gradients agree; the optimizer update of "
                        f"{w['path']} differs (relative deviation {deviation:.2e})",
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
        "notes": list(other.get("notes", [])),
    }


def _layer(path):
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else path

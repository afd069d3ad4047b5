"""`first_nonfinite`: where in a recorded training step the first NaN/Inf arose."""

import numpy as np

from xstable.inspection._fixes import suggest_fix
from xstable.inspection.location import NonFiniteLocation

__all__ = ["first_nonfinite"]

# How many finite tensors leading up to the culprit are listed with their magnitude.
_MAGNITUDES_SHOWN = 8


def first_nonfinite(recording):
    """Returns where the first non-finite value of a recorded step arose, or `None`.

    The stages are read in the order the step computes them: the weights the step starts
    from, each layer's output in the forward pass (the innermost call whose inputs were
    finite and whose outputs are not), the loss, each layer's gradients in the backward pass,
    and the weights after the update. Only the per-tensor maxima are read until a non-finite
    one shows; then the full tensors of that place give the batch rows and the count.

    Args:
        recording: A `StepRecording` (from `record_step`, or read back with `from_tree`).

    Returns:
        A `NonFiniteLocation`, or `None` when every recorded value is finite.
    """
    return (
        _weight_problem(recording)
        or _forward_culprit(recording)
        or _loss_problem(recording)
        or _backward_culprit(recording)
        or _update_problem(recording)
    )


def _finite(maxima):
    return bool(np.all(np.isfinite(maxima)))


def _nonfinite_mask(tensor):
    values = np.asarray(tensor, dtype=np.float64)
    return ~np.isfinite(values)


def _row_indices(bad):
    bad = np.asarray(bad)
    if bad.ndim == 0:
        return []
    return [int(i) for i in np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))]


def _bad_rows(tensors, batch_size):
    rows = set()
    count = 0
    for t in tensors:
        bad = _nonfinite_mask(t)
        count += int(bad.sum())
        if bad.ndim and bad.shape[0] == batch_size:
            rows.update(_row_indices(bad))
    return sorted(rows), count


def _ancestors(call, calls):
    parent = call.parent
    while parent is not None:
        yield parent
        parent = calls[parent].parent


def _keep_innermost(candidates, calls):
    """Drops candidates that contain another candidate: the inner layer is the more precise."""
    chosen = set(candidates)
    for index in candidates:
        for ancestor in _ancestors(calls[index], calls):
            chosen.discard(ancestor)
    return sorted(chosen, key=lambda i: calls[i].end_order)


def _weight_problem(recording):
    for variable in recording.variables:
        if not np.isfinite(variable.value_max):
            return NonFiniteLocation(
                stage="forward",
                layer_path=variable.owner,
                tensor="weight",
                count=int(_nonfinite_mask(variable.value).sum()),
                fix=suggest_fix("forward", "weight"),
                detail=f"Variable `{variable.path}` is non-finite before the step runs.",
            )
    return None


def _forward_culprit(recording):
    calls = recording.calls
    candidates = [
        i
        for i, call in enumerate(calls)
        if not _finite(call.output_max) and _finite(call.input_max)
    ]
    if not candidates:
        return None
    index = _keep_innermost(candidates, calls)[0]
    culprit = calls[index]
    rows, count = _bad_rows(culprit.outputs, recording.batch_size)
    before = sorted(
        (c for c in calls if c.end_order < culprit.end_order and len(c.outputs)),
        key=lambda c: c.end_order,
    )
    magnitudes = [(c.path, float(np.max(c.output_max))) for c in before]
    magnitudes = [m for m in magnitudes if np.isfinite(m[1])][-_MAGNITUDES_SHOWN:]
    detail = f"`{culprit.class_name}` turned finite inputs into non-finite outputs."
    first_bad_input = next(
        (c for c in calls if c.parent == index and not _finite(c.input_max)), None
    )
    if first_bad_input is not None:
        detail = (
            f"The non-finite values arise in `{culprit.path}`'s own call() code, before "
            f"it calls `{first_bad_input.path}` (its sublayers' outputs were all finite)."
        )
    return NonFiniteLocation(
        stage="forward",
        layer_path=culprit.path,
        tensor="output",
        rows=rows,
        count=count,
        last_finite_magnitudes=magnitudes,
        fix=suggest_fix("forward", "output", culprit.class_name, magnitudes),
        detail=detail,
    )


def _loss_problem(recording):
    if recording.loss is None or np.isfinite(recording.loss):
        return None
    rows, count = [], 1
    if recording.per_row_loss is not None:
        rows, count = _bad_rows([recording.per_row_loss], recording.batch_size)
        count = max(count, 1)
    magnitudes = [
        (c.path, float(np.max(c.output_max)))
        for c in recording.calls
        if c.parent is None and len(c.outputs)
    ]
    return NonFiniteLocation(
        stage="loss",
        layer_path=None,
        tensor="loss",
        rows=rows,
        count=count,
        last_finite_magnitudes=magnitudes,
        fix=suggest_fix("loss", "loss"),
        detail=(
            f"Every layer output is finite but the loss is {abs(recording.loss)}"
            + (f"; per-row loss is non-finite in {len(rows)} row(s)." if rows else ".")
        ),
    )


def _first_dim(groups):
    for group in groups:
        for t in group:
            if len(t.shape):
                return t.shape[0]
    return None


def _backward_culprit(recording):
    if recording.loss is None:
        return None
    calls = recording.calls
    bad_by_owner = {}
    for variable in recording.trainable:
        if not np.isfinite(variable.gradient_max):
            bad_by_owner.setdefault(variable.owner, []).append(variable)
    any_bad = bool(bad_by_owner) or any(
        not _finite(c.input_gradient_max) or not _finite(c.output_gradient_max) for c in calls
    )
    if not any_bad:
        return None
    candidates = [
        i
        for i, c in enumerate(calls)
        if _finite(c.output_gradient_max)
        and (not _finite(c.input_gradient_max) or c.layer_path in bad_by_owner)
    ]
    batch_size = _first_dim(c.input_gradients for c in calls)
    if not candidates:
        # Even the gradient reaching the model output is non-finite: the loss's derivative.
        tensors = [g for c in calls if c.parent is None for g in c.output_gradients]
        rows, count = _bad_rows(tensors, _first_dim(c.output_gradients for c in calls))
        return NonFiniteLocation(
            stage="backward",
            layer_path=None,
            tensor="gradient",
            rows=rows,
            count=count,
            fix=suggest_fix("backward", "gradient", None),
            detail=(
                f"The loss ({abs(recording.loss)}) is finite but its gradient with respect "
                "to the model output is not."
            ),
        )
    ordered = _keep_innermost(candidates, calls)
    culprit = calls[ordered[-1]]  # backward visits layers in reverse order of completion
    rows, count = _bad_rows(culprit.input_gradients, batch_size)
    bad_weights = bad_by_owner.get(culprit.layer_path, [])
    for variable in bad_weights:
        count += int(_nonfinite_mask(variable.gradient).sum())
    after = sorted(
        (c for c in calls if c.end_order > culprit.end_order and len(c.outputs)),
        key=lambda c: -c.end_order,
    )
    magnitudes = [(c.path, _peak(c.output_gradient_max)) for c in after]
    magnitudes.append(
        (f"{culprit.path} (output gradient)", _peak(culprit.output_gradient_max))
    )
    magnitudes = [m for m in magnitudes if np.isfinite(m[1])][-_MAGNITUDES_SHOWN:]
    names = ", ".join(f"`{v.path}`" for v in bad_weights)
    parts = []
    if not _finite(culprit.input_gradient_max):
        parts.append("its input gradient")
    if bad_weights:
        parts.append(f"the gradient of {names}")
    detail = (
        f"The gradient reaching `{culprit.path}` is finite, but {' and '.join(parts)} "
        "is not: an op inside it has an infinite derivative at these values."
    )
    return NonFiniteLocation(
        stage="backward",
        layer_path=culprit.layer_path,
        tensor="gradient",
        rows=rows,
        count=count,
        last_finite_magnitudes=magnitudes,
        fix=suggest_fix("backward", "gradient", culprit.class_name),
        detail=detail,
    )


def _peak(maxima):
    """max of a maxima vector; NaN for an empty one (recorded without probes)."""
    return float(np.max(maxima)) if len(maxima) else float("nan")


def _update_problem(recording):
    if recording.optimizer is None:
        return None
    for variable in recording.trainable:
        if variable.updated_max is None or np.isfinite(variable.updated_max):
            continue
        magnitudes = [
            (f"{variable.path} (gradient)", float(variable.gradient_max)),
            (f"{variable.path} (weight before update)", float(variable.value_max)),
        ]
        return NonFiniteLocation(
            stage="update",
            layer_path=variable.owner,
            tensor="update",
            count=int(_nonfinite_mask(variable.updated).sum()),
            last_finite_magnitudes=magnitudes,
            fix=suggest_fix("update", "update"),
            detail=(
                f"`{recording.optimizer}` turned the finite gradient of `{variable.path}` "
                "into non-finite weights."
            ),
        )
    return None

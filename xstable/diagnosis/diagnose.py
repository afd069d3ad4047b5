"""`xstable.diagnose(model, x, y)`: a pre-flight check before training goes NaN."""

import contextlib

import keras
import numpy as np

from xstable.diagnosis import _data_checks as data_checks
from xstable.diagnosis import _model_checks as model_checks
from xstable.diagnosis._model_facts import OUTPUT_RANGES, model_facts
from xstable.diagnosis.findings import DiagnosisReport, Finding
from xstable.layers import AutoScale
from xstable.runtime import active_backend

__all__ = ["diagnose"]

# Robust statistics (medians) on more rows than this use a fixed random subset of rows.
MAX_STATISTICS_ROWS = 200_000

_STAGE_FIXES = {
    "input": (
        "xstable.layers.FiniteCheck",
        "keras.Sequential([keras.Input(shape), xstable.layers.FiniteCheck(policy='replace'), "
        "...])  # or clean the rows",
    ),
    "target": (
        "xstable.losses.SafeLoss",
        "model.compile(loss=xstable.losses.SafeLoss('mse'), ...)  # and clean the targets",
    ),
    "forward": (
        "xstable.layers.FiniteCheck",
        "insert xstable.layers.FiniteCheck(policy='raise') after the layer named above; scale "
        "inputs with xstable.layers.AutoScale",
    ),
    "loss": (
        "xstable.losses.SafeLoss",
        "model.compile(loss=xstable.losses.SafeLoss(loss), ...)",
    ),
    "backward": (
        "xstable.optimizers.GuardedOptimizer",
        "optimizer=xstable.optimizers.GuardedOptimizer(keras.optimizers.Adam(1e-3), "
        "global_clipnorm=1.0)",
    ),
    "update": (
        "xstable.optimizers.GuardedOptimizer",
        "optimizer=xstable.optimizers.GuardedOptimizer(keras.optimizers.Adam(1e-3), "
        "global_clipnorm=1.0)  # skips non-finite steps",
    ),
}


def _named_leaves(name, structure):
    """[(display name, leaf)] for an array or a list/tuple/dict of arrays."""
    if isinstance(structure, dict):
        return [
            (f"{name}[{key!r}]", leaf)
            for key, value in structure.items()
            for _, leaf in _named_leaves("", value)
        ]
    if isinstance(structure, (list, tuple)):
        if len(structure) == 1:
            return _named_leaves(name, structure[0])
        return [(f"{name}[{index}]", item) for index, item in enumerate(structure)]
    return [(name, structure)]


def _as_array(name, leaf):
    try:
        array = np.asarray(keras.ops.convert_to_numpy(leaf) if keras.ops.is_tensor(leaf) else leaf)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a numeric array (NumPy, pandas, or a backend tensor). "
            f"Received: {name} of type {type(leaf).__name__} ({error})"
        ) from error
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"`{name}` must hold numbers (bool, int or float). Received: {name} with dtype "
            f"{array.dtype}. Encode strings or categories as numbers before training."
        )
    if array.ndim == 0:
        raise ValueError(
            f"`{name}` must have a batch dimension (rows first). Received: a scalar {name}"
        )
    return array


def _as_matrix(array):
    return np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)


def _validate(model, x, y):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a `keras.Model` (Sequential, Functional or subclassed). "
            f"Received: model of type {type(model).__name__}"
        )
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError(
            "`model` must be compiled: diagnose checks the loss and the optimizer too. "
            f"Received: an uncompiled model {model.name!r}. Call "
            "`model.compile(optimizer=..., loss=...)` first."
        )
    if x is None or y is None:
        raise ValueError(
            "`x` and `y` are both required (the training inputs and targets). "
            f"Received: x={'None' if x is None else '...'}, y={'None' if y is None else '...'}"
        )


def _starts_with_auto_scale(model):
    layers = getattr(model, "layers", None) or []
    return bool(layers) and isinstance(layers[0], AutoScale) and layers[0].built


def _after_input_scaling(model, x_matrix):
    """The inputs as the first weighted layer sees them: through a leading `AutoScale`."""
    if not _starts_with_auto_scale(model):
        return x_matrix
    layers = model.layers
    try:
        scaled = layers[0](np.asarray(x_matrix, dtype="float32"))
    except (TypeError, ValueError, RuntimeError):
        return x_matrix
    return np.asarray(keras.ops.convert_to_numpy(scaled), dtype=np.float64).reshape(
        x_matrix.shape[0], -1
    )


def _rows(named_arrays):
    return {name: int(array.shape[0]) for name, array in named_arrays}


def _choose_sample_rows(finite_rows, sample_rows):
    indices = np.flatnonzero(finite_rows)
    return indices[:sample_rows]


def _take(structure, rows):
    return keras.tree.map_structure(lambda leaf: np.asarray(leaf)[rows], structure)


def _statistics_rows(num_rows):
    if num_rows <= MAX_STATISTICS_ROWS:
        return None
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(num_rows, size=MAX_STATISTICS_ROWS, replace=False))


def _target_range(facts):
    """(low, high, reason) that the targets must respect, or None."""
    if facts.loss_family in ("binary_crossentropy", "categorical_crossentropy"):
        return 0.0, 1.0, f"the loss `{facts.loss_name}` (targets are probabilities)"
    if facts.output_activation in OUTPUT_RANGES and facts.loss_family != (
        "sparse_categorical_crossentropy"
    ):
        low, high = OUTPUT_RANGES[facts.output_activation]
        return low, high, f"the output activation `{facts.output_activation}`"
    return None


def _locate_step(model, x, y, sample_weight, rows):
    """Runs one instrumented training step; returns (training_step dict, findings)."""
    try:
        from xstable.diagnosis import locate_nonfinite
    except ImportError as error:
        return {"ran": False, "why": f"xstable.diagnosis.locate_nonfinite unavailable: {error}"}, []
    xb, yb = _take(x, rows), _take(y, rows)
    wb = None if sample_weight is None else np.asarray(sample_weight)[rows]
    step = {"ran": True, "rows": [int(r) for r in rows]}
    try:
        location = locate_nonfinite(model, xb, yb, sample_weight=wb)
    except Exception as error:  # Report it; the other findings still stand.
        return {
            "ran": False,
            "why": f"locate_nonfinite failed: {type(error).__name__}: {error}",
        }, []
    if location is None:
        step["finite"] = True
        return step, []
    step["finite"] = False
    step["location"] = location.to_dict()
    fix, example = _STAGE_FIXES.get(location.stage, _STAGE_FIXES["forward"])
    batch_rows = getattr(location, "rows", None)
    evidence = dict(location.to_dict())
    if batch_rows is not None:
        evidence["data_rows"] = [int(rows[r]) for r in list(batch_rows)[:10] if r < len(rows)]
    return step, [
        Finding(
            code="nonfinite-training-step",
            severity="error",
            title=(
                f"one training step goes non-finite at stage `{location.stage}`"
                f" in `{location.layer_path}` ({location.tensor})"
            ),
            evidence=evidence,
            fix=fix,
            example=example,
            why=str(getattr(location, "fix", "") or ""),
        )
    ]


def diagnose(
    model,
    x,
    y,
    *,
    sample_weight=None,
    batch_size=32,
    sample_rows=256,
    training_step=True,
):
    """Checks data, model and compile settings for known causes of NaN loss, before training.

    Data checks: NaN/Inf in `x` and `y`; features whose typical magnitudes (95th percentile
    of |x|) differ by 2+ orders of magnitude; outliers by a robust z-score (distance from the
    median in units of 1.4826 x MAD, threshold 10); constant features; targets the output
    activation (or a cross-entropy loss) cannot produce; sparse labels that are negative,
    not whole numbers, or not below the number of classes.

    Model and compile checks: a sigmoid/softmax output with a probability-space
    cross-entropy; plain SGD whose learning rate exceeds the stability limit of squared error
    for these inputs (`learning_rate * lambda_max(X^T X / n) > 1`); an Adam-family learning
    rate comparable to the weights it moves; float16 layers without loss scaling (and inputs
    beyond float16's range); hidden sigmoid/tanh layers mostly saturated on the data; a
    custom loss that is non-finite at typical break points; a model whose loss at its initial
    weights is more than twice the trivial predictor's (`xstable.training.trivial_loss`: the
    target mean or the label prior), fixed by a `Rescaling` output or the prior's logit as
    output bias. Learning-rate findings give a `suggested_learning_rate`. Finally one instrumented training
    step with `xstable.diagnosis.locate_nonfinite` on a batch that starts with the rows the
    data checks flagged.

    Every finding has a severity, the numbers that show it, the xstable (or Keras) component
    that fixes it and a one-line example. The model's weights and optimizer state are not
    changed (an unbuilt model is built by calling it on a few rows).

    Args:
        model: `keras.Model`. Built or buildable, and compiled.
        x: Array-like (NumPy, pandas, backend tensor) or a list/dict of them: the inputs.
        y: Array-like: the targets as given to `fit`.
        sample_weight: Optional array-like of per-row weights.
        batch_size: int. Rows in the instrumented training step.
        sample_rows: int. Rows used for forward probes (saturation, probability outputs).
        training_step: bool. Run the instrumented training step.

    Returns:
        A `DiagnosisReport`: `print(report)` for people, `report.to_dict()` for machines,
        `report.codes` / `report.by_code(code)` for tests.

    Raises:
        TypeError: If `model` is not a `keras.Model` or the data is not numeric.
        ValueError: If the model is not compiled, `x`/`y` are missing or have different
            numbers of rows, or the data holds no finite value at all.

    Example:

    ```python
    report = xstable.diagnose(model, x_train, y_train)
    print(report)
    if report.count("error"):
        raise SystemExit(1)
    ```
    """
    _validate(model, x, y)
    with _loss_counters_kept(model):
        return _diagnose(model, x, y, sample_weight, batch_size, sample_rows, training_step)


@contextlib.contextmanager
def _loss_counters_kept(model):
    """Undoes what the loss's counters record while diagnose runs the loss: it only looks.

    A counter listed in `compile(metrics=...)` is reset by Keras at the start of each epoch
    only once the compiled metrics are built, so counts left from diagnose would otherwise
    show in the first epoch of the next `fit`.
    """
    losses = getattr(model, "loss", None)
    leaves = [] if losses is None or isinstance(losses, str) else keras.tree.flatten(losses)
    variables = [
        variable
        for loss in leaves
        for counter in getattr(loss, "counters", ()) or ()
        for variable in counter.variables
    ]
    saved = [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def _diagnose(model, x, y, sample_weight, batch_size, sample_rows, training_step):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )
    x_named = [(name, _as_array(name, leaf)) for name, leaf in _named_leaves("x", x)]
    y_named = [(name, _as_array(name, leaf)) for name, leaf in _named_leaves("y", y)]
    weight_named = (
        []
        if sample_weight is None
        else [("sample_weight", _as_array("sample_weight", sample_weight))]
    )
    row_counts = _rows(x_named + y_named + weight_named)
    if len(set(row_counts.values())) != 1:
        raise ValueError(
            "`x`, `y` (and `sample_weight`) must have the same number of rows. "
            f"Received: rows {row_counts}. Check that inputs and targets were split the same way."
        )
    num_rows = next(iter(row_counts.values()))
    if num_rows == 0:
        raise ValueError("`x` and `y` are empty. Received: 0 rows")

    x_matrices = [(name, _as_matrix(array)) for name, array in x_named]
    y_matrices = [(name, _as_matrix(array)) for name, array in y_named]
    for name, matrix in x_matrices + y_matrices:
        if matrix.size and not np.isfinite(matrix).any():
            raise ValueError(
                f"`{name}` holds no finite value at all (every value is NaN or Inf). "
                f"Received: {name} with shape {matrix.shape}. Check how the data was loaded."
            )

    finite_rows = np.ones(num_rows, dtype=bool)
    for _, matrix in x_matrices + y_matrices:
        finite_rows &= np.isfinite(matrix).all(axis=1)
    sample_index = _choose_sample_rows(finite_rows, sample_rows)
    x_sample = _take(x, sample_index) if sample_index.size else None
    if not model.built and x_sample is not None:
        model(_take(x, sample_index[:2]))

    facts = model_facts(model)
    findings = []
    notes = []
    stats_rows = _statistics_rows(num_rows)
    if stats_rows is not None:
        notes.append(
            f"medians and percentiles use {MAX_STATISTICS_ROWS} of {num_rows} rows "
            "(fixed random subset); NaN/Inf counts use every row"
        )

    # ---- inputs
    flagged_rows = []
    typical_magnitude = 0.0
    input_abs_max = 0.0
    scaled_inputs = len(x_matrices) == 1 and _starts_with_auto_scale(model)
    if scaled_inputs:
        notes.append(
            "the model starts with an adapted AutoScale: scale, outlier and curvature checks "
            "read the inputs as it scales them"
        )
    for name, matrix in x_matrices:
        findings += data_checks.check_nonfinite(name, matrix, "input")
        seen = _after_input_scaling(model, matrix) if scaled_inputs else matrix
        stats_matrix = seen if stats_rows is None else seen[stats_rows]
        stats = data_checks.feature_stats(name, stats_matrix)
        findings += data_checks.check_constant_features(stats)
        findings += data_checks.check_scale_spread(stats)
        outliers = data_checks.check_outliers(seen, stats, "input")
        findings += outliers
        typical_magnitude = max(typical_magnitude, stats.typical_magnitude)
        finite_values = np.abs(matrix[np.isfinite(matrix)])
        if finite_values.size:
            input_abs_max = max(input_abs_max, float(finite_values.max()))
    for finding in findings:
        flagged_rows += finding.evidence.get("first_rows", [])

    # ---- targets
    if len(y_matrices) == 1:
        name, y_matrix = y_matrices[0]
        findings += data_checks.check_nonfinite(name, y_matrix, "target")
        if facts.loss_family == "sparse_categorical_crossentropy":
            findings += data_checks.check_sparse_labels(
                y_matrix, facts.output_units, facts.ignore_class, facts.loss_name
            )
        else:
            target_range = _target_range(facts)
            if target_range is not None:
                findings += data_checks.check_target_range(y_matrix, *target_range, facts.loss_name)
            if facts.loss_family in ("regression", "custom", "other"):
                y_stats_matrix = y_matrix if stats_rows is None else y_matrix[stats_rows]
                y_stats = data_checks.feature_stats(name, y_stats_matrix)
                findings += data_checks.check_outliers(y_matrix, y_stats, "target")
    else:
        for name, y_matrix in y_matrices:
            findings += data_checks.check_nonfinite(name, y_matrix, "target")
        notes.append(
            "several outputs: target range and label checks cover single-output models only"
        )
    for finding in findings:
        if finding.code.startswith(("nonfinite-target", "target-", "sparse-label")):
            flagged_rows += finding.evidence.get("first_rows", [])
    for name, weight_matrix in [(n, _as_matrix(a)) for n, a in weight_named]:
        findings += data_checks.check_nonfinite(name, weight_matrix, "sample_weight")

    # ---- model and compile settings
    predictions = None
    if x_sample is not None and facts.output_activation in ("sigmoid", "softmax", "hard_sigmoid"):
        output = model(x_sample, training=False)
        if not isinstance(output, (list, tuple, dict)):
            predictions = np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float64)
    findings += model_checks.check_probability_loss(facts, predictions)
    single_input = x_matrices[0][1] if len(x_matrices) == 1 else None
    if single_input is not None:
        single_input = _after_input_scaling(model, single_input)
    findings += model_checks.check_sgd_step(facts, single_input, typical_magnitude)
    findings += model_checks.check_adaptive_learning_rate(facts, model)
    findings += model_checks.check_float16(facts, input_abs_max)
    saturation, note = model_checks.check_saturating_activations(model, x_sample, typical_magnitude)
    findings += saturation
    if note:
        notes.append(note)
    y_sample = None
    if len(y_named) == 1 and sample_index.size:
        y_sample = np.asarray(y_named[0][1])[sample_index[:8]]
    output_tail = None
    if facts.output_units is not None:
        output_tail = (facts.output_units,)
    findings += model_checks.check_custom_loss(facts, y_sample, output_tail)
    if len(y_named) == 1 and sample_index.size:
        y_rows = np.asarray(y_named[0][1])[sample_index]
        findings += model_checks.check_output_start(facts, model, x_sample, y_rows)

    # ---- one instrumented training step
    if training_step:
        ordered = list(dict.fromkeys(int(r) for r in flagged_rows))[: max(1, batch_size // 2)]
        fill = [r for r in range(num_rows) if r not in set(ordered)][: batch_size - len(ordered)]
        rows = np.array(ordered + fill, dtype=np.int64)
        step, step_findings = _locate_step(model, x, y, sample_weight, rows)
        findings += step_findings
    else:
        step = {"ran": False, "why": "training_step=False"}

    summary = {
        "backend": active_backend(),
        "model": facts.model_name,
        "rows": num_rows,
        "inputs": {name: list(array.shape[1:]) for name, array in x_named},
        "targets": {name: list(array.shape[1:]) for name, array in y_named},
        "output_activation": facts.output_activation,
        "loss": facts.loss_name,
        "loss_family": facts.loss_family,
        "optimizer": " > ".join(facts.optimizer_wrappers + [facts.optimizer_name]),
        "learning_rate": facts.learning_rate,
        "compute_dtypes": facts.compute_dtypes,
        "input_magnitude_p95": typical_magnitude,
        "notes": notes,
    }
    return DiagnosisReport(findings, summary, step)

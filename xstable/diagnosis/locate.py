"""`locate_nonfinite`: run one instrumented training step and say where the first NaN/Inf arose.

The step is the one `fit` would take on the batch: forward pass with `training=True`, loss,
gradients, optimizer update. It runs inside a `keras.StatelessScope`, so neither the
model's variables (weights, batch-norm statistics, seed generators, metrics) nor the
optimizer's state change. Data is checked first, then the weights, then the forward pass
layer by layer, the loss, the backward pass layer by layer, and the update.

The step itself (`_instrumented_step`, `_compiled_update`) is one forward+backward call and
one update call that return max|value| of every recorded tensor in one vector; they are
traced on the first call for a model and batch shape on JAX, on the second on TensorFlow,
and reused afterwards (`xstable.backend.CompiledFunction`). This module only reads that vector, and the full tensors where it shows
a non-finite value.
"""

import keras
import numpy as np
from keras import ops

from xstable.diagnosis._compiled_update import updated_weights
from xstable.diagnosis._fixes import suggest_fix
from xstable.diagnosis._instrumented_step import instrumented_step
from xstable.diagnosis._layer_tree import is_floating, variable_owners
from xstable.diagnosis._location import NonFiniteLocation

__all__ = ["locate_nonfinite", "NonFiniteLocation"]

# How many finite tensors leading up to the culprit are listed with their magnitude.
_MAGNITUDES_SHOWN = 8


def locate_nonfinite(model, x, y=None, *, sample_weight=None, loss=None, optimizer=None):
    """Runs one instrumented training step and returns where its first non-finite value arose.

    The check follows the order in which a training step computes: the input batch, the
    targets (and sample weights), the weights, each layer's output in the forward pass
    (nested models included), the loss, each layer's gradients in the backward pass, and the
    weights after the optimizer update. The first place holding a NaN or infinity whose own
    inputs were finite is reported, with the batch rows responsible where they can be told.

    Nothing is modified: the step runs in a `keras.StatelessScope`, with copies of the
    optimizer state. A model that is not built yet is built by calling it on `x` (which only
    creates its initial weights).

    Cost: the step is traced (`jax.jit` / `tf.function`, about as costly as the first `fit`
    step) on the first call for a model and batch shape on JAX and on the second on
    TensorFlow (whose first call runs eagerly); later calls reuse the trace and cost one to
    two training steps. torch runs eagerly, as its `fit` does. A new batch shape, loss, recompilation or change of the model's layers
    or variables starts over. `loss=` given as a fresh `Loss` object on each call counts as
    a new loss; pass the same object (or a name) to reuse the trace.

    Args:
        model: A `keras.Model` (Sequential, Functional or subclassed; nested models are
            followed).
        x: Input batch: array, tensor, or a list/dict of them, as accepted by `model(x)`.
        y: Targets. Needed for every stage from the loss on; with `y=None` only the data,
            weights and forward pass are checked.
        sample_weight: Optional per-row weights.
        loss: Loss to use instead of the model's compiled one: a `keras.losses.Loss`, a name
            or a callable `loss(y_true, y_pred)`.
        optimizer: Optimizer to use instead of the model's compiled one. Without either, the
            update stage is not checked.

    Returns:
        `None` when every value of the step is finite, else a `NonFiniteLocation`.

    Raises:
        TypeError: If `model` is not a `keras.Model` or `keras.layers.Layer`.
        ValueError: If `y` is given but there is neither a `loss` nor a compiled loss.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.ones((4, 3), "float32"); x[2, 1] = np.nan
    >>> loc = locate_nonfinite(model, x, np.zeros((4, 1), "float32"))
    >>> loc.stage, loc.rows
    ('input', [2])
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "`model` must be a keras.Model or keras.layers.Layer. "
            f"Received: model={type(model).__name__}. Pass the Keras model you train."
        )
    data_problem = (
        _check_data(x, stage="input", tensor="input")
        or _check_data(y, stage="target", tensor="target")
        or _check_data(sample_weight, stage="target", tensor="sample_weight")
    )
    if data_problem is not None:
        return data_problem

    x = keras.tree.map_structure(_to_tensor, x)
    y = None if y is None else keras.tree.map_structure(_to_tensor, y)
    if sample_weight is not None:
        sample_weight = _to_tensor(sample_weight)
    if not model.built:
        model(x)
    loss_fn = _resolve_loss(model, loss, y)
    program = instrumented_step(model, x, y, sample_weight, loss_fn)
    step = program.run(x, y, sample_weight)

    owners = variable_owners(model)
    weight_problem = _weight_problem(model, step, owners)
    if weight_problem is not None:
        return weight_problem
    problem = _forward_culprit(step)
    if problem is not None:
        return problem
    if loss_fn is None:
        return None
    if not np.isfinite(step.loss_value):
        return _loss_problem(step)
    problem = _backward_culprit(step, owners, model)
    if problem is not None:
        return problem

    optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return _update_problem(model, optimizer, step, owners)


def _to_tensor(value):
    if value is None or isinstance(value, (str, bytes)):
        return value
    return ops.convert_to_tensor(value)


def _row_indices(bad, batch_axis_size=None):
    bad = np.asarray(bad)
    if bad.ndim == 0:
        return []
    if batch_axis_size is not None and bad.shape[0] != batch_axis_size:
        return []
    return [int(i) for i in np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))]


def _check_data(data, stage, tensor):
    if data is None:
        return None
    flat = keras.tree.flatten(data)
    keys = _leaf_names(data)
    for name, leaf in zip(keys, flat, strict=True):
        if leaf is None or not is_floating(leaf):
            continue
        values = np.asarray(ops.convert_to_numpy(leaf))
        bad = ~np.isfinite(values)
        if bad.any():
            rows = _row_indices(bad)
            kinds = _kinds(values[bad])
            where = f"{tensor}{name}" if name else tensor
            return NonFiniteLocation(
                stage=stage,
                layer_path=None,
                tensor=tensor,
                rows=rows,
                count=int(bad.sum()),
                fix=suggest_fix(stage, tensor),
                detail=f"`{where}` holds {kinds} in {len(rows)} row(s) of the batch.",
            )
    return None


def _leaf_names(data):
    if isinstance(data, dict):
        names = []
        for key in sorted(data):
            sub = _leaf_names(data[key])
            names.extend(f"[{key!r}]{s}" for s in sub)
        return names
    if isinstance(data, (list, tuple)):
        names = []
        for i, item in enumerate(data):
            names.extend(f"[{i}]{s}" for s in _leaf_names(item))
        return names
    return [""]


def _kinds(bad_values):
    bad_values = np.asarray(bad_values, dtype=np.float64)
    parts = []
    for label, mask in (
        ("NaN", np.isnan(bad_values)),
        ("+Inf", np.isposinf(bad_values)),
        ("-Inf", np.isneginf(bad_values)),
    ):
        if mask.any():
            parts.append(f"{int(mask.sum())} {label}")
    return ", ".join(parts)


def _max_abs(tensors):
    """Max |value| of each tensor with a single device-to-host transfer (NaN/Inf propagate)."""
    if not tensors:
        return np.zeros((0,))
    maxima = []
    for t in tensors:
        if int(np.prod(t.shape)) == 0:
            maxima.append(ops.zeros((), "float32"))
        else:
            maxima.append(ops.cast(ops.max(ops.abs(t)), "float32"))
    return np.asarray(ops.convert_to_numpy(ops.stack(maxima)), dtype=np.float64)


def _describe(tensor):
    values = np.asarray(ops.convert_to_numpy(tensor), dtype=np.float64)
    bad = ~np.isfinite(values)
    return values, bad


def _weight_problem(model, step, owners):
    for weight, value in zip(step.checked_weights, step.checked_weight_max, strict=True):
        if not np.isfinite(value):
            _, bad = _describe(ops.convert_to_tensor(weight))
            return NonFiniteLocation(
                stage="forward",
                layer_path=owners.get(id(weight), model.name),
                tensor="weight",
                count=int(bad.sum()),
                fix=suggest_fix("forward", "weight"),
                detail=f"Variable `{weight.path}` is non-finite before the step runs.",
            )
    return None


def _resolve_loss(model, loss, y):
    if y is None:
        return None
    if loss is not None:
        loss_object = keras.losses.get(loss)
        if loss_object is None or not callable(loss_object):
            raise ValueError(
                "`loss` must be a keras.losses.Loss, a loss name or a callable. "
                f"Received: loss={loss!r}."
            )
        return ("given", loss_object)
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        return ("compiled", None)
    raise ValueError(
        "locate_nonfinite needs a loss to check the loss, backward and update stages. "
        f"Received: loss=None and model {model.name!r} has no compiled loss. "
        "Compile the model or pass `loss=`; pass y=None to check only the forward pass."
    )


def _keep_innermost(candidates, records):
    """Drops candidates that contain another candidate: the inner layer is the more precise."""
    chosen = set(candidates)
    for index in candidates:
        for ancestor in records[index].ancestors(records):
            chosen.discard(ancestor)
    return sorted(chosen, key=lambda i: records[i].end_order)


def _bad_rows(tensors, batch_size):
    rows = set()
    count = 0
    for t in tensors:
        values, bad = _describe(t)
        count += int(bad.sum())
        if bad.ndim and bad.shape[0] == batch_size:
            rows.update(_row_indices(bad))
    return sorted(rows), count


def _batch_size_of(records, y_pred):
    for leaf in keras.tree.flatten(y_pred):
        if getattr(leaf, "shape", None) is not None and len(leaf.shape):
            return leaf.shape[0]
    return None


def _forward_culprit(forward):
    records = forward.records
    if not any(not np.all(np.isfinite(m)) for m in forward.out_max):
        return None
    candidates = [
        r.index
        for r in records
        if not np.all(np.isfinite(forward.out_max[r.index]))
        and np.all(np.isfinite(forward.in_max[r.index]))
    ]
    if not candidates:
        return None
    culprit = records[_keep_innermost(candidates, records)[0]]
    batch_size = _batch_size_of(records, forward.y_pred)
    rows, count = _bad_rows(forward.outputs[culprit.index], batch_size)
    before = sorted(
        (r for r in records if r.end_order < culprit.end_order and forward.outputs[r.index]),
        key=lambda r: r.end_order,
    )
    magnitudes = [(r.path, float(np.max(forward.out_max[r.index]))) for r in before]
    magnitudes = [m for m in magnitudes if np.isfinite(m[1])][-_MAGNITUDES_SHOWN:]
    detail = f"`{type(culprit.layer).__name__}` turned finite inputs into non-finite outputs."
    children = [r for r in records if r.parent == culprit.index]
    if children:
        first_bad_input = next(
            (
                r
                for r in sorted(children, key=lambda r: r.index)
                if not np.all(np.isfinite(forward.in_max[r.index]))
            ),
            None,
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
        fix=suggest_fix("forward", "output", culprit.layer, magnitudes),
        detail=detail,
    )


def _loss_problem(forward):
    rows = []
    count = 1
    per_sample = forward.per_row
    batch_size = _batch_size_of(forward.records, forward.y_pred)
    if per_sample is not None:
        rows, count = _bad_rows([per_sample], batch_size)
        count = max(count, 1)
    outputs = [r for r in forward.records if r.parent is None]
    magnitudes = [
        (r.path, float(np.max(forward.out_max[r.index])))
        for r in outputs
        if forward.outputs[r.index]
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
            f"Every layer output is finite but the loss is {forward.loss_value}"
            + (f"; per-row loss is non-finite in {len(rows)} row(s)." if rows else ".")
        ),
    )


def _backward_culprit(backward, owners, model):
    records = backward.records
    weight_bad_by_owner = {}
    for weight, value in zip(backward.weights, backward.weight_grad_max, strict=True):
        if not np.isfinite(value):
            weight_bad_by_owner.setdefault(owners.get(id(weight)), []).append(weight)
    any_bad = bool(weight_bad_by_owner) or any(
        not np.all(np.isfinite(m)) for m in backward.in_grad_max + backward.out_grad_max
    )
    if not any_bad:
        return None

    def out_grad_finite(r):
        return bool(np.all(np.isfinite(backward.out_grad_max[r.index])))

    def in_grad_finite(r):
        return bool(np.all(np.isfinite(backward.in_grad_max[r.index])))

    owner_paths = {r.index: _owner_path(r, records) for r in records}
    candidates = [
        r.index
        for r in records
        if out_grad_finite(r)
        and (not in_grad_finite(r) or owner_paths[r.index] in weight_bad_by_owner)
    ]
    batch_size = _batch_size_of(records, None) or _first_dim(backward.in_grads)
    if not candidates:
        # Even the gradient reaching the model output is non-finite: the loss's derivative.
        top = [r for r in records if r.parent is None]
        tensors = [g for r in top for g in backward.out_grads[r.index]]
        rows, count = _bad_rows(tensors, _first_dim(backward.out_grads))
        return NonFiniteLocation(
            stage="backward",
            layer_path=None,
            tensor="gradient",
            rows=rows,
            count=count,
            fix=suggest_fix("backward", "gradient", None),
            detail=(
                f"The loss ({backward.loss_value}) is finite but its gradient with respect "
                "to the model output is not."
            ),
        )
    ordered = _keep_innermost(candidates, records)
    culprit = records[ordered[-1]]  # backward visits layers in reverse order of completion
    rows, count = _bad_rows(backward.in_grads[culprit.index], batch_size)
    bad_weights = weight_bad_by_owner.get(owner_paths[culprit.index], [])
    for weight in bad_weights:
        grad = backward.weight_grads[_index_of(backward.weights, weight)]
        count += int(_describe(grad)[1].sum())
    after = sorted(
        (r for r in records if r.end_order > culprit.end_order and backward.outputs[r.index]),
        key=lambda r: -r.end_order,
    )
    magnitudes = [(r.path, float(np.max(backward.out_grad_max[r.index]))) for r in after]
    magnitudes.append(
        (f"{culprit.path} (output gradient)", float(np.max(backward.out_grad_max[culprit.index])))
    )
    magnitudes = [m for m in magnitudes if np.isfinite(m[1])][-_MAGNITUDES_SHOWN:]
    names = ", ".join(f"`{w.path}`" for w in bad_weights)
    parts = []
    if not in_grad_finite(culprit):
        parts.append("its input gradient")
    if bad_weights:
        parts.append(f"the gradient of {names}")
    detail = (
        f"The gradient reaching `{culprit.path}` is finite, but {' and '.join(parts)} "
        "is not: an op inside it has an infinite derivative at these values."
    )
    return NonFiniteLocation(
        stage="backward",
        layer_path=culprit.path.split("[call")[0],
        tensor="gradient",
        rows=rows,
        count=count,
        last_finite_magnitudes=magnitudes,
        fix=suggest_fix("backward", "gradient", culprit.layer),
        detail=detail,
    )


def _first_dim(groups):
    for group in groups:
        for t in group:
            if len(t.shape):
                return t.shape[0]
    return None


def _index_of(items, item):
    for i, candidate in enumerate(items):
        if candidate is item:
            return i
    return -1


def _owner_path(record, records):
    return record.path.split("[call")[0]


def _update_problem(model, optimizer, backward, owners):
    new_values, maxima = updated_weights(
        optimizer, backward.weights, backward.weight_values, backward.weight_grads
    )
    for weight, value, new_value, grad_max in zip(
        backward.weights, maxima, new_values, backward.weight_grad_max, strict=True
    ):
        if np.isfinite(value):
            continue
        _, bad = _describe(new_value)
        magnitudes = [
            (f"{weight.path} (gradient)", float(grad_max)),
            (
                f"{weight.path} (weight before update)",
                float(_max_abs([backward.weight_values[_index_of(backward.weights, weight)]])[0]),
            ),
        ]
        return NonFiniteLocation(
            stage="update",
            layer_path=owners.get(id(weight), model.name),
            tensor="update",
            count=int(bad.sum()),
            last_finite_magnitudes=magnitudes,
            fix=suggest_fix("update", "update"),
            detail=(
                f"`{type(optimizer).__name__}` turned the finite gradient of `{weight.path}` "
                "into non-finite weights."
            ),
        )
    return None

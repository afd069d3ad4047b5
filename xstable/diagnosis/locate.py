"""`locate_nonfinite`: record one training step and say where the first NaN/Inf arose.

The step is the one `fit` would take on the batch: forward pass with `training=True`, loss,
gradients, optimizer update. It runs inside a `keras.StatelessScope`, so neither the
model's variables (weights, batch-norm statistics, seed generators, metrics) nor the
optimizer's state change. Data is checked first; the step itself is recorded by
`xstable.inspection.record_step` and read by `xstable.inspection.first_nonfinite`.
"""

import keras
import numpy as np
from keras import ops

from xstable._layer_tree import is_floating
from xstable.inspection._fixes import suggest_fix
from xstable.inspection.first_nonfinite import first_nonfinite
from xstable.inspection.location import NonFiniteLocation
from xstable.inspection.record import record_step

__all__ = ["locate_nonfinite", "NonFiniteLocation"]


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
    if y is not None and optimizer is None:
        optimizer = getattr(model, "optimizer", None)
    recording = record_step(
        model, x, y, sample_weight=sample_weight, loss=loss, optimizer=optimizer
    )
    return first_nonfinite(recording)


def _row_indices(bad):
    bad = np.asarray(bad)
    if bad.ndim == 0:
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

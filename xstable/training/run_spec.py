"""`run_spec`: train a `TrainingSpec` on the active backend with a pinned batch order."""

import math
import time
import warnings

import numpy as np

from xstable import runtime
from xstable.training.batch_order import batch_order
from xstable.training.outcome import EXPLODED_FACTOR, classify_outcome, trivial_loss
from xstable.training.run_result import RunResult
from xstable.training.training_spec import TrainingSpec

__all__ = ["run_spec"]


def _rows(data, index):
    if isinstance(data, (list, tuple)):
        return type(data)(_rows(d, index) for d in data)
    if isinstance(data, dict):
        return {k: _rows(v, index) for k, v in data.items()}
    return data[index]


def _num_rows(data, name):
    if isinstance(data, (list, tuple)) and data:
        return _num_rows(data[0], name)
    if isinstance(data, dict) and data:
        return _num_rows(next(iter(data.values())), name)
    if not hasattr(data, "shape") or not data.shape:
        raise TypeError(
            f"`make_data` must return NumPy arrays with a leading batch axis. "
            f"Received: {name} of type {type(data).__name__}."
        )
    return data.shape[0]


def _all_weights_finite(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


def _trivial_loss(model, y):
    """The trivial predictor's loss with the compiled loss, or None where it cannot be had."""
    if y is None or not isinstance(y, np.ndarray) or model.loss is None:
        return None
    units = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    try:
        return trivial_loss(model.loss, y, num_classes=units)
    except (TypeError, ValueError):
        return None


def _final_loss(model, x, y, batch_size):
    """Mean loss over every training row, in batches of `batch_size` rows."""
    logs = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return float(logs["loss"])


def run_spec(
    spec,
    initial_weights=None,
    stop_on_nonfinite=True,
    trivial_loss="auto",
    exploded_factor=EXPLODED_FACTOR,
    before_step=None,
    diverged_threshold=None,
):
    """Trains `spec` on the active backend, one `train_on_batch` per step, and measures it.

    The outcome says whether the model learned (`xstable.training.classify_outcome`): the
    loss on every training row after the last step is compared with the loss of the trivial
    predictor (the target mean, or the label prior) under the same compiled loss.

    Args:
        spec: `TrainingSpec` to run.
        initial_weights: Optional list of NumPy arrays for `model.set_weights`, so that runs
            on different backends start from the same weights. `None`: the spec's seed decides.
        stop_on_nonfinite: bool, stop at the first non-finite loss (the weights are then
            usually non-finite too, and further steps only repeat NaN).
        trivial_loss: `"auto"` (computed by `xstable.training.trivial_loss` from the compiled
            loss and the spec's targets), a float, or `None` (do not judge learning: a
            finite run is then `"ok"`).
        exploded_factor: float, a finite final loss above `exploded_factor * trivial_loss`
            is `"exploded"`.
        before_step: Optional `(step, epoch, batch, model, x_batch, y_batch) -> None` called
            before every step, e.g. to capture weights or activations at a given step.
        diverged_threshold: Deprecated and ignored: outcomes are judged against the trivial
            loss. Kept so that callers written for the former `"diverged"` outcome still run.

    Returns:
        A `RunResult`.

    Raises:
        TypeError: If `spec` is not a `TrainingSpec` or `build_model` returns no Keras model.
        ValueError: If `initial_weights` do not fit the model, or x and y differ in length.
    """
    if not isinstance(spec, TrainingSpec):
        raise TypeError(
            f"`spec` must be an `xstable.training.TrainingSpec`. "
            f"Received: spec of type {type(spec).__name__}."
        )
    model = spec.seeded_model()
    if initial_weights is not None:
        expected = [tuple(w.shape) for w in model.weights]
        received = [tuple(np.shape(w)) for w in initial_weights]
        if expected != received:
            raise ValueError(
                f"`initial_weights` do not fit the model of spec {spec.name!r}: expected "
                f"shapes {expected}, received {received}. Build them from the same spec."
            )
        model.set_weights(initial_weights)
    x, y = spec.make_data()
    num_rows = _num_rows(x, "x")
    if y is not None and _num_rows(y, "y") != num_rows:
        raise ValueError(
            f"x and y of spec {spec.name!r} differ in length: {num_rows} vs "
            f"{_num_rows(y, 'y')} rows. Return arrays with the same first dimension."
        )
    if diverged_threshold is not None:
        warnings.warn(
            "`diverged_threshold` is ignored: run_spec judges a run against the trivial "
            "predictor's loss (`trivial_loss=`). Drop the argument.",
            DeprecationWarning,
            stacklevel=2,
        )
    model.compile(**spec.make_compile_args(), jit_compile=spec.jit_compile)
    if trivial_loss == "auto":
        trivial_loss = _trivial_loss(model, y)

    order = batch_order(num_rows, spec.batch_size, spec.epochs, spec.shuffle, spec.seed)
    losses, steps_per_epoch = [], []
    first = None
    start = time.perf_counter()
    for epoch, steps in enumerate(order):
        steps_per_epoch.append(len(steps))
        for batch, index in enumerate(steps):
            x_batch = _rows(x, index)
            y_batch = None if y is None else _rows(y, index)
            if before_step is not None:
                before_step(len(losses), epoch, batch, model, x_batch, y_batch)
            logs = model.train_on_batch(x_batch, y_batch, return_dict=True)
            loss = float(logs["loss"])
            losses.append(loss)
            if first is None and not math.isfinite(loss):
                first = (len(losses) - 1, epoch, batch)
            if first is not None and stop_on_nonfinite:
                break
        if first is not None and stop_on_nonfinite:
            break
    wall_time = time.perf_counter() - start

    weights_finite = _all_weights_finite(model)
    finite = first is None and weights_finite
    if finite:
        # Every step finite; a row's loss can still be non-finite, and classify says "nan".
        final_loss = _final_loss(model, x, y, spec.batch_size)
    else:
        final_loss = losses[-1] if losses and not math.isfinite(losses[-1]) else math.nan
    outcome = classify_outcome(
        final_loss, trivial_loss, finite=finite, exploded_factor=exploded_factor
    )
    return RunResult(
        name=spec.name,
        losses=losses,
        steps_per_epoch=steps_per_epoch,
        first_nonfinite_step=None if first is None else first[0],
        first_nonfinite_epoch=None if first is None else first[1],
        first_nonfinite_batch=None if first is None else first[2],
        final_loss=final_loss,
        weights_finite=weights_finite,
        outcome=outcome,
        trivial_loss=trivial_loss,
        backend=runtime.active_backend(),
        device=runtime.active_device(),
        versions=runtime.library_versions(),
        seed=spec.seed,
        jit_compile=spec.jit_compile,
        wall_time_s=wall_time,
        stopped_early=first is not None and stop_on_nonfinite,
    )

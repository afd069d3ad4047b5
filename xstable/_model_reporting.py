"""Puts an xstable optimizer's or loss's metrics into the `fit` logs of the model using it.

Keras builds `fit` logs, the progress bar and `History` from `model.metrics`, and gives an
optimizer or a loss no handle on the model that trains with it (`compile()` stores the loss
with dependency tracking off). The model is on the call stack, though, whenever Keras builds
or runs a training step: its own methods (`_symbolic_build`, `train_step`, ...) call the
optimizer's `build`/`apply` and the loss. `calling_model` finds that frame, and accepts it
only when the model really uses the object (an identity check, `model_uses`), so no other
model is ever touched. `report_metrics` then adds the metrics to one `ReportedMetrics`
container set on the model as an attribute, which Keras's attribute tracking adds to
`model.metrics`, exactly as for a metric a user assigns in a subclassed model. Where no model is found (a custom training loop, a future
Keras that calls from elsewhere) nothing changes: the metrics can still be listed by hand in
`compile(metrics=...)`.

The one rule that matters on JAX: a metric *with variables* must not join the model while a
jitted train step is being traced, because the trainer has already fixed the list of metric
variables it threads through the step. Such metrics are only attached while the model builds
itself (`_symbolic_build`, `compile_from_config`), which Keras does before the first step of
every `fit`/`evaluate`/`train_on_batch` after `compile()`.
"""

import sys
import weakref

import keras

__all__ = []

_ATTRIBUTE = "_xstable_reported_metrics"
# Frames to look through: Keras calls the optimizer/loss 3-12 frames below the model method.
_MAX_FRAMES = 30
# Model methods during which metric variables may still be added on JAX.
_BUILDING_METHODS = ("_symbolic_build", "compile_from_config", "build")


def model_uses(model, obj):
    """True when `model` is compiled with `obj` as (or inside) its optimizer or as a loss."""
    optimizer = getattr(model, "optimizer", None)
    while optimizer is not None:
        if optimizer is obj:
            return True
        optimizer = getattr(optimizer, "inner_optimizer", None)
    loss = getattr(model, "loss", None)
    if loss is obj:  # the common case, asked every step: no flattening
        return True
    if loss is None or isinstance(loss, str):
        return False
    return any(leaf is obj for leaf in keras.tree.flatten(loss))


def _model_frames(skip, limit):
    """Yields `(model, method name)` for the frames up the stack whose `self` is a Keras model.

    Args:
        skip: Frames to skip above the caller of this generator's caller.
        limit: How many frames to look through at most.
    """
    frame = sys._getframe(skip + 1)
    for _ in range(limit):
        if frame is None:
            return
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, keras.Model):
            yield candidate, frame.f_code.co_name
        frame = frame.f_back


def calling_model(obj):
    """Returns `(model, building)` for the nearest Keras model up the stack that uses `obj`.

    Args:
        obj: The optimizer or loss asking (see `model_uses`).

    Returns:
        The model, and whether one of its frames on the stack is a build method (see the
        module docstring); `(None, False)` when no model using `obj` is on the stack.
    """
    model, building = None, False
    for candidate, method in _model_frames(skip=2, limit=_MAX_FRAMES):
        if candidate is model or (model is None and model_uses(candidate, obj)):
            model = candidate
            building = building or method in _BUILDING_METHODS
    return model, building


class ReportedMetrics(keras.metrics.Metric):
    """The metrics xstable objects report on one model, shown in its logs as their own keys.

    One per model, set as a model attribute once. Its `variables` are those of the metrics
    it holds (so the JAX trainer carries them through the step), `result()` merges their
    results, `reset_state()` resets them. Holding the list itself (not as attributes Keras
    tracks) lets a metric be dropped again when the model is re-compiled without its owner.
    """

    def __init__(self, model=None, name="xstable_reported_metrics"):
        super().__init__(name=name)
        object.__setattr__(self, "_reported", [])
        object.__setattr__(self, "_model", weakref.ref(model) if model is not None else None)

    @property
    def reported(self):
        """The held metrics whose owner the model still uses (re-`compile` drops others)."""
        model = self._model() if self._model is not None else None
        if model is None:
            return list(self._reported)
        return [metric for metric in self._reported if _owner_used(model, metric)]

    @property
    def variables(self):
        return [variable for metric in self.reported for variable in metric.variables]

    def update_state(self, *args, **kwargs):
        """Does nothing: each held metric is updated by its owner."""
        del args, kwargs

    def reset_state(self):
        for metric in self.reported:
            metric.reset_state()

    def result(self):
        results = {}
        for metric in self.reported:
            value = metric.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[metric.name] = value
        return results

    def get_config(self):
        return {"name": self.name}


_STEP_METHODS = ("train_step", "test_step", "predict_step")


def in_model_step():
    """True when called (at any depth) from a Keras model's `train_step`/`test_step`/`predict_step`.

    These are the public, overridable step methods every Keras trainer runs each batch
    through; on JAX they are stateless even when run eagerly, so an exception inside one
    loses the model's state.
    """
    return any(
        method in _STEP_METHODS for _, method in _model_frames(skip=1, limit=2 * _MAX_FRAMES)
    )


def _owner_used(model, metric):
    owner = getattr(metric, "_xstable_owner", lambda: None)()
    return owner is not None and model_uses(model, owner)


def _reported_metric_ids(model, container):
    ids = set(id(metric) for metric in container.reported)
    for metric in model.metrics:
        if metric is container:
            continue
        ids.add(id(metric))
        for inner in getattr(metric, "metrics", ()):  # CompileMetrics holds the listed ones
            ids.add(id(inner))
    return ids


def _container(model):
    container = getattr(model, _ATTRIBUTE, None)
    if container is not None and any(metric is container for metric in model.metrics):
        return container
    if container is not None:
        # Set while Keras had attribute tracking off (e.g. inside LossScaleOptimizer.build).
        delattr(model, _ATTRIBUTE)
    container = ReportedMetrics(model)
    setattr(model, _ATTRIBUTE, container)
    if not any(metric is container for metric in model.metrics):
        delattr(model, _ATTRIBUTE)
        return None
    return container


def report_metrics(model, metrics, owner):
    """Adds `metrics` of `owner` to the logs of `model` (once), dropping stale earlier ones.

    Metrics reported earlier for an optimizer or loss the model no longer uses (after a
    re-`compile`) are dropped first, so they do not linger in the logs. Metrics the user
    already listed in `compile(metrics=...)` are not added twice.

    Args:
        model: The `keras.Model` (from `calling_model`).
        metrics: `keras.metrics.Metric` instances to show in the model's logs.
        owner: The optimizer or loss the metrics belong to.

    Returns:
        True when every metric now reaches the model's logs. False when Keras had attribute
        tracking switched off at this moment (e.g. inside `LossScaleOptimizer.build`): call
        again later, from a training step.
    """
    container = _container(model)
    if container is None:
        return False
    kept = container.reported
    present = _reported_metric_ids(model, container)
    for metric in metrics:
        if id(metric) not in present:
            object.__setattr__(metric, "_xstable_owner", weakref.ref(owner))
            kept.append(metric)
            present.add(id(metric))
    object.__setattr__(container, "_reported", kept)
    return True


class ModelReporter:
    """Keeps an optimizer's or loss's metrics reported on the model that uses it.

    `report()` is cheap once it has succeeded: it checks that the model it reported to still
    uses the owner (an identity check) instead of walking the stack again, so it can run on
    every eager step.

    Args:
        owner: The optimizer or loss.
        metrics: Callable returning the `keras.metrics.Metric`s to report.
        stateful: Whether the metrics have variables. On JAX those may only join a model
            while it builds (see the module docstring); elsewhere at any time.
    """

    def __init__(self, owner, metrics, stateful):
        self._owner = weakref.ref(owner)
        self._metrics = metrics
        self._stateful = stateful
        self._model = lambda: None

    @property
    def model(self):
        """The model reported to, or None."""
        return self._model()

    def report(self):
        """Reports the metrics on the calling model if not done yet; returns that model."""
        owner = self._owner()
        model = self._model()
        if owner is None:
            return None
        if model is not None and model_uses(model, owner):
            return model
        model, building = calling_model(owner)
        if model is None:
            return None
        if self._stateful and keras.config.backend() == "jax" and not building:
            return None
        if not report_metrics(model, self._metrics(), owner):
            return None
        self._model = weakref.ref(model)
        return model

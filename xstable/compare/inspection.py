"""One training step taken apart on the active backend: layer outputs, loss, gradients, update.

Used by the compare worker in two ways:
- `capture_state` replays a spec up to a step and returns the exact state the step starts from
  (weights, optimizer variables, batch), so that every backend can be inspected on identical
  inputs;
- `inspect_state` loads such a state and records every layer's forward output, the loss, the
  gradient of every trainable variable and the weights after one `train_on_batch`.
`locate_nonfinite` reads one inspection and says where a NaN first appears.
"""

import math
import weakref

import keras
import numpy as np

from xstable.backend import jit_if_jax, value_and_gradients
from xstable.training import run_spec

__all__ = [
    "StateRecorder",
    "capture_state",
    "inspect_model",
    "inspect_state",
    "locate_nonfinite",
    "layer_of_variable",
    "prediction_record",
]


class _ReplayReachedStep(Exception):
    """Raised from `before_step` to stop a replay once the wanted state is captured."""


def _to_numpy(value):
    if isinstance(value, keras.Variable):
        value = value.value
    return np.asarray(keras.ops.convert_to_numpy(value))


def _snapshot(model, step, epoch, batch, x_batch, y_batch):
    optimizer = model.optimizer
    return {
        "step": step,
        "epoch": epoch,
        "batch": batch,
        # np.array copies: torch's convert_to_numpy shares memory with the live parameter.
        "weights": [np.array(_to_numpy(w)) for w in model.weights],
        "optimizer_variables": [np.array(_to_numpy(v)) for v in optimizer.variables]
        if optimizer is not None and optimizer.built
        else [],
        "x": x_batch,
        "y": y_batch,
    }


def _nbytes(state):
    arrays = state["weights"] + state["optimizer_variables"]
    for data in (state["x"], state["y"]):
        arrays += [d for d in (data if isinstance(data, (list, tuple)) else [data])
                   if hasattr(data, "nbytes")]
    return sum(getattr(a, "nbytes", 0) for a in arrays)


class StateRecorder:
    """A `run_spec` `before_step` hook that keeps the state each step starts from.

    Keeping the states during the run makes a replay unnecessary: the state before a NaN step
    or before the step where backends part is at hand, and the trained, compiled model is
    reused for the inspection (no second build or trace). States are kept up to
    `budget_bytes`; past it only the latest two are kept (enough to locate a NaN, also one
    that an update made) and `state_at` returns `None` for older steps, so the caller replays
    instead. The states alive at any time therefore take at most `S + max(budget_bytes, S)`
    bytes, `S` being one state's size (weights, optimizer variables and the batch), however
    many steps the run takes (see "Memory" in docs/compare.md).

    Args:
        budget_bytes: int, memory for kept states.
    """

    def __init__(self, budget_bytes=256 * 2**20):
        self.budget_bytes = budget_bytes
        self.states = {}
        self.latest = None
        self.previous = None
        self.model = None
        self.used_bytes = 0
        self.complete = True

    def __call__(self, step, epoch, batch, model, x_batch, y_batch):
        self.model = model
        # The older of the two latest states is let go before the new one is taken, so that
        # past the budget no more than two states are alive at any time.
        self.previous = self.latest
        state = _snapshot(model, step, epoch, batch, x_batch, y_batch)
        self.latest = state
        if self.complete:
            size = _nbytes(state)
            if self.used_bytes + size <= self.budget_bytes:
                self.states[step] = state
                self.used_bytes += size
            else:
                self.complete = False
                self.states.clear()

    def state_at(self, step):
        """Returns the state in which `step` began, or `None` if it was not kept."""
        for state in (self.latest, self.previous):
            if state is not None and state["step"] == step:
                return state
        return self.states.get(step)


def capture_state(spec, initial_weights, step):
    """Replays `spec` on the active backend and returns the state in which `step` begins.

    Args:
        spec: `TrainingSpec`.
        initial_weights: list of NumPy arrays the run started from (`None`: the spec's seed).
        step: int, index of the step whose starting state is wanted.

    Returns:
        A dict with `step`, `epoch`, `batch`, `weights` (list of arrays),
        `optimizer_variables` (list of arrays, empty before the first step), `x` and `y` (the
        step's batch).

    Raises:
        ValueError: If the run ends before `step`.
    """
    captured = {}

    def before_step(index, epoch, batch, model, x_batch, y_batch):
        if index == step:
            captured.update(_snapshot(model, step, epoch, batch, x_batch, y_batch))
            raise _ReplayReachedStep

    try:
        result = run_spec(spec, initial_weights=initial_weights, before_step=before_step)
    except _ReplayReachedStep:
        return captured
    raise ValueError(
        f"`step` {step} is past the end of the run of spec {spec.name!r}, which took "
        f"{len(result.losses)} steps. Pass a step the run reached."
    )


def _build_compiled(spec):
    keras.utils.set_random_seed(spec.seed)
    model = spec.build_model()
    model.compile(**spec.make_compile_args(), jit_compile=spec.jit_compile)
    return model


def _restore(model, state, notes):
    model.set_weights(state["weights"])
    values = state["optimizer_variables"]
    if not values:
        return
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    shapes = [tuple(v.shape) for v in variables]
    if shapes != [tuple(np.shape(v)) for v in values]:
        notes.append(
            "optimizer state not transferred: its variables differ between backends "
            f"({len(values)} captured, {len(variables)} here); the update starts fresh"
        )
        return
    for variable, value in zip(variables, values):
        variable.assign(value)


def _layer_probe(model, notes):
    layers = [
        layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    ]
    try:
        outputs = [layer.output for layer in layers]
        return layers, keras.Model(model.input, outputs)
    except Exception as error:  # Subclassed models and shared layers have no single output.
        if isinstance(model, keras.Sequential) and layers:
            # A Sequential built without `keras.Input` has no symbolic graph, but its layers
            # still run one after the other.
            return layers, _SequentialProbe(layers)
        notes.append(
            f"per-layer forward outputs unavailable for this model ({type(error).__name__}: "
            f"{error}); comparing the loss and gradients only"
        )
        return [], None


class _SequentialProbe:
    """Every layer output of a Sequential model, by calling its layers in order."""

    def __init__(self, layers):
        self.layers = layers
        self.outputs = layers  # one output per layer, as `keras.Model(...).outputs` has

    def __call__(self, x, training=False):
        outputs = []
        for layer in self.layers:
            x = layer(x, training=training)
            outputs.append(x)
        return outputs


def _flat_arrays(value):
    if isinstance(value, dict):
        return [a for k in sorted(value) for a in _flat_arrays(value[k])]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _flat_arrays(v)]
    return [_to_numpy(value)]


def layer_of_variable(path):
    """Returns the layer part of a Keras variable path: `"model/dense_1/kernel"` -> `"dense_1"`."""
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else path


class _Inspector:
    """A model's layer probe and its forward/loss/gradient function, built once per model.

    Locating a NaN takes up to three steps of one trained model apart; building the probe
    and (on JAX) compiling the function once saves a compilation per further step.
    """

    def __init__(self, model):
        self.notes = []
        self.layers, self.probe = _layer_probe(model, self.notes)
        self.trainable = list(model.trainable_variables)
        self.variables = list(model.variables)
        self.function = jit_if_jax(self._compute_function(model))

    def _compute_function(self, model):
        probe, trainable, variables = self.probe, self.trainable, self.variables

        def compute(values, x, y, scale):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                outputs = probe(x, training=True) if probe is not None else []

                def loss_fn():
                    # The model itself, not the probe, feeds the loss: on TensorFlow the loss
                    # recovers logits from the model's own sigmoid/softmax.
                    y_pred = model(x, training=True)
                    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
                    # `scale`: a LossScaleOptimizer's scale, to see the gradients its
                    # update sees (1 otherwise); the loss reported is the unscaled one.
                    return loss * keras.ops.cast(scale, loss.dtype), loss

                _, loss, gradients = value_and_gradients(loss_fn, trainable)
            if probe is not None and len(probe.outputs) == 1:
                outputs = [outputs]
            return outputs, loss, gradients

        return compute

    def forward_loss_gradients(self, x, y, loss_scale=1.0):
        """Layer outputs, loss and gradients of one batch, without changing any variable.

        Runs inside a `keras.StatelessScope`, so batch-statistics updates of the forward pass
        are discarded, and as one compiled function on JAX (`jit_if_jax`).
        """
        return self.function([v.value for v in self.variables], x, y,
                             np.asarray(loss_scale, dtype="float32"))


_INSPECTORS = weakref.WeakKeyDictionary()


def _inspector(model):
    inspector = _INSPECTORS.get(model)
    if inspector is None:
        inspector = _INSPECTORS[model] = _Inspector(model)
    return inspector


def inspect_state(spec, state, include_update=True, loss_scale=1.0):
    """Takes the step that starts from `state` apart on the active backend.

    The model is rebuilt from `spec`, compiled as in training, and given the captured weights
    and optimizer variables; the forward pass runs in training mode (as in `fit`).

    Args:
        spec: `TrainingSpec`.
        state: dict from `capture_state`.
        include_update: bool, also run one `train_on_batch` from the state (`train_loss`,
            `updated_weights`); `False` leaves them `None` and `[]`, which saves compiling
            the train step.

    Returns:
        A dict with `layers` (list of `{"name", "class", "outputs": [arrays]}` in model order),
        `loss` (float, eager forward pass), `gradients` (list of `{"path", "layer", "value"}`
        for trainable variables), `weights_finite` (list of `{"path", "finite"}` of the state),
        `train_loss` (the loss `train_on_batch` reports from this state), `updated_weights`
        (list of `{"path", "value"}` after that step) and `notes` (list of str).
    """
    return inspect_model(_build_compiled(spec), state, include_update, loss_scale)


def inspect_model(model, state, include_update=True, loss_scale=1.0):
    """Like `inspect_state`, on an already built and compiled model (e.g. the trained one).

    The model's weights and optimizer variables are overwritten with the state's.
    """
    notes = []
    _restore(model, state, notes)
    x, y = state["x"], state["y"]
    inspector = _inspector(model)
    notes.extend(inspector.notes)
    layers, trainable = inspector.layers, inspector.trainable
    layer_records = []
    outputs, loss, gradients = inspector.forward_loss_gradients(x, y, loss_scale)
    for layer, output in zip(layers, outputs):
        layer_records.append(
            {"name": layer.name, "class": type(layer).__name__, "outputs": _flat_arrays(output)}
        )
    gradient_records = [
        {"path": v.path, "layer": layer_of_variable(v.path), "value": _to_numpy(g)}
        for v, g in zip(trainable, gradients)
    ]
    weights_finite = [
        {"path": w.path, "finite": bool(np.isfinite(value).all())}
        for w, value in zip(model.weights, state["weights"])
    ]
    train_loss, updated = None, []
    if include_update:
        train_loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        updated = [{"path": w.path, "value": np.array(_to_numpy(w))} for w in model.weights]
    return {
        "layers": layer_records,
        "loss": float(_to_numpy(loss)),
        "gradients": gradient_records,
        "weights_finite": weights_finite,
        "train_loss": train_loss,
        "updated_weights": updated,
        "notes": notes,
    }


def _all_finite(arrays):
    return all(np.isfinite(a).all() for a in arrays)


def locate_nonfinite(inspection, step):
    """Says where the first non-finite value of a step appears, from one `inspect_state`.

    The stages are checked in the order they run: the weights the step starts from (made
    non-finite by the previous step's update), each layer's forward output, the loss, the
    gradients (from the output layer back), and the update of this step.

    Args:
        inspection: dict from `inspect_state`.
        step: int, the step that was inspected.

    Returns:
        A dict `{"step", "stage", "layer", "detail"}`; `stage` is one of `"update"`,
        `"forward"`, `"loss"`, `"backward"`, `"none"` (every value finite: the non-finite
        loss of the run did not reproduce).
    """
    for record in inspection["weights_finite"]:
        if not record["finite"]:
            return {
                "step": step - 1,
                "stage": "update",
                "layer": layer_of_variable(record["path"]),
                "detail": f"the update of step {step - 1} made {record['path']} non-finite",
            }
    for record in inspection["layers"]:
        if not _all_finite(record["outputs"]):
            return {
                "step": step,
                "stage": "forward",
                "layer": record["name"],
                "detail": f"output of layer {record['name']} ({record['class']}) is non-finite",
            }
    if not math.isfinite(inspection["loss"]):
        return {
            "step": step,
            "stage": "loss",
            "layer": None,
            "detail": "every layer output is finite; the loss is not",
        }
    for record in reversed(inspection["gradients"]):
        if not np.isfinite(record["value"]).all():
            return {
                "step": step,
                "stage": "backward",
                "layer": record["layer"],
                "detail": f"gradient of {record['path']} is non-finite",
            }
    for record in inspection["updated_weights"]:
        if not np.isfinite(record["value"]).all():
            return {
                "step": step,
                "stage": "update",
                "layer": layer_of_variable(record["path"]),
                "detail": f"the update of step {step} made {record['path']} non-finite",
            }
    if inspection["train_loss"] is not None and not math.isfinite(inspection["train_loss"]):
        return {
            "step": step,
            "stage": "loss",
            "layer": None,
            "detail": "the eager forward pass and loss are finite, the compiled train step's "
            "loss is not",
        }
    return {
        "step": step,
        "stage": "none",
        "layer": None,
        "detail": "every value of the replayed step is finite",
    }


def _first_rows(x, rows):
    if isinstance(x, dict):
        return {k: _first_rows(v, rows) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_first_rows(v, rows) for v in x)
    return x[:rows]


def prediction_record(spec, initial_weights, x, full=True):
    """The model's outputs and every layer's output in inference mode, from given weights.

    Args:
        spec: `TrainingSpec`.
        initial_weights: list of NumPy arrays (`None`: the weights `spec.seed` gives).
        x: the inputs (array, or list/dict of arrays).
        full: bool, predict all of `x` with `model.predict` (in batches of
            `spec.batch_size`); `False`: only the first batch, in one eager call.

    Returns:
        A dict: `outputs` (list of arrays, the model's outputs flattened), `layers` (list of
        `{"name", "class", "outputs"}` on the first batch, `training=False`), `rows` and
        `layer_rows` (how many input rows each covers) and `notes`.
    """
    keras.utils.set_random_seed(spec.seed)
    model = spec.build_model()
    if initial_weights is not None:
        model.set_weights(initial_weights)
    first = _first_rows(x, spec.batch_size)
    if full:
        predicted = model.predict(x, batch_size=spec.batch_size, verbose=0)
    else:
        predicted = model(first, training=False)
    notes = []
    layers, probe = _layer_probe(model, notes)
    records = []
    if probe is not None:
        outputs = probe(first, training=False)
        if len(probe.outputs) == 1:
            outputs = [outputs]
        records = [
            {"name": layer.name, "class": type(layer).__name__, "outputs": _flat_arrays(out)}
            for layer, out in zip(layers, outputs)
        ]
    first_array = _flat_arrays(first)[0] if not isinstance(first, np.ndarray) else first
    all_rows = len(_flat_arrays(x)[0]) if not isinstance(x, np.ndarray) else len(x)
    return {
        "outputs": [np.array(a) for a in _flat_arrays(predicted)],
        "layers": records,
        "rows": int(all_rows if full else len(first_array)),
        "layer_rows": int(len(first_array)),
        "notes": notes,
    }

"""One training step taken apart on the active backend, for the compare worker.

- `capture_state` replays a spec up to a step and returns the exact state the step starts from
  (weights, optimizer variables, batch), so that every backend can be inspected on identical
  inputs;
- `inspect_state` / `inspect_model` load such a state and record the step with
  `xstable.inspection.record_step` (every layer call, the loss, every gradient), then run the
  backend's own compiled `train_on_batch` for the update. The result is the recording's data
  form (`StepRecording.to_tree`) with compare's per-layer view added, so it crosses the
  process boundary as data;
- `locate_nonfinite` reads one inspection with `xstable.inspection.first_nonfinite`.
"""

import math

import keras
import numpy as np

from xstable.inspection import StepRecording, first_nonfinite, record_step
from xstable.training import run_spec

__all__ = [
    "StateRecorder",
    "capture_state",
    "inspect_model",
    "inspect_state",
    "inspection_of",
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
        loss_scale: float, a `LossScaleOptimizer`'s scale: the gradients are those of the
            scaled loss, as its update sees them (the loss reported is unscaled).

    Returns:
        `inspection_of` the recorded step: the `StepRecording`'s data with `layers` (list of
        `{"name", "class", "outputs": [arrays]}` in the order the layers ran), `loss` (float),
        `gradients` (list of `{"path", "layer", "value"}` for trainable variables),
        `weights_finite` (list of `{"path", "finite"}` of the state), `train_loss` (the loss
        `train_on_batch` reports from this state), `updated_weights` (list of
        `{"path", "value"}` after that step) and `notes` (list of str).
    """
    return inspect_model(_build_compiled(spec), state, include_update, loss_scale)


def inspect_model(model, state, include_update=True, loss_scale=1.0):
    """Like `inspect_state`, on an already built and compiled model (e.g. the trained one).

    The model's weights and optimizer variables are overwritten with the state's.
    """
    notes = []
    _restore(model, state, notes)
    x, y = state["x"], state["y"]
    # No probes: the loss must see the model's own output tensors (on TensorFlow it recovers
    # the logits of a sigmoid/softmax output from them, as the compiled train step does).
    recording = record_step(model, x, y, probes=False, loss_scale=loss_scale, update="never")
    recording.notes = notes
    for variable in recording.variables:
        variable.updated = variable.updated_max = None
    if include_update:
        # The data is read before train_on_batch changes the weights.
        tree = recording.to_tree()
        recording = StepRecording.from_tree(tree)
        recording.train_loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        recording.optimizer = type(model.optimizer).__name__
        variables = list(model.trainable_variables) + list(model.non_trainable_variables)
        for record, variable in zip(recording.variables, variables, strict=True):
            record.updated = np.array(_to_numpy(variable))
            record.updated_max = _max_abs(record.updated)
    return inspection_of(recording)


def _max_abs(array):
    array = np.asarray(array)
    if array.size == 0 or not np.issubdtype(array.dtype, np.floating):
        return 0.0
    return float(np.max(np.abs(array)))


def inspection_of(recording):
    """The data form of a `StepRecording` with compare's per-layer view added.

    Args:
        recording: A `StepRecording`.

    Returns:
        `recording.to_tree()` plus `layers` (the outermost model's layer calls in the order
        they ran: `{"name", "class", "outputs"}`), `gradients` (`{"path", "layer", "value"}`
        per trainable variable), `weights_finite` (`{"path", "finite"}` per variable, when the
        step began) and `updated_weights` (`{"path", "value"}` after the update; empty
        without one). The view holds the same arrays as the recording's data.
    """
    tree = recording.to_tree()
    calls = [c for c in tree["calls"] if c["parent"] == 0]
    variables = tree["variables"]
    return {
        **tree,
        "layers": [
            {"name": c["name"], "class": c["class"], "outputs": c["outputs"]} for c in calls
        ],
        "gradients": [
            {"path": v["path"], "layer": layer_of_variable(v["path"]), "value": v["gradient"]}
            for v in variables
            if v["trainable"] and v["gradient"] is not None
        ],
        "weights_finite": [
            {"path": v["path"], "finite": bool(math.isfinite(v["value_max"]))}
            for v in variables
        ],
        "updated_weights": [
            {"path": v["path"], "value": v["updated"]}
            for v in variables
            if v["updated"] is not None
        ]
        if tree["optimizer"] is not None
        else [],
    }


def locate_nonfinite(inspection, step):
    """Says where the first non-finite value of a step appears, from one `inspect_state`.

    The stages are checked in the order they run: the weights the step starts from (made
    non-finite by the previous step's update), each layer's forward output, the loss, the
    gradients (from the output layer back), and the update of this step
    (`xstable.inspection.first_nonfinite`), then the compiled train step's loss.

    Args:
        inspection: dict from `inspect_state`.
        step: int, the step that was inspected.

    Returns:
        A dict `{"step", "stage", "layer", "detail"}`; `stage` is one of `"update"`,
        `"forward"`, `"loss"`, `"backward"`, `"none"` (every value finite: the non-finite
        loss of the run did not reproduce).
    """
    recording = StepRecording.from_tree(inspection)
    location = first_nonfinite(recording)
    stage = None if location is None else location.stage
    if stage == "forward" and location.tensor == "weight":
        variable = next(v for v in recording.variables if not math.isfinite(v.value_max))
        return {
            "step": step - 1,
            "stage": "update",
            "layer": layer_of_variable(variable.path),
            "detail": f"the update of step {step - 1} made {variable.path} non-finite",
        }
    if stage == "forward":
        call = next(c for c in recording.calls if c.path == location.layer_path)
        return {
            "step": step,
            "stage": "forward",
            "layer": call.name,
            "detail": f"output of layer {call.name} ({call.class_name}) is non-finite",
        }
    if stage == "loss":
        return {
            "step": step,
            "stage": "loss",
            "layer": None,
            "detail": "every layer output is finite; the loss is not",
        }
    if stage == "backward":
        bad = [v for v in recording.trainable if not math.isfinite(v.gradient_max)]
        variable = next(
            (v for v in reversed(bad) if v.owner == location.layer_path), bad[-1] if bad else None
        )
        return {
            "step": step,
            "stage": "backward",
            "layer": None if variable is None else layer_of_variable(variable.path),
            "detail": "the gradient with respect to the model output is non-finite"
            if variable is None
            else f"gradient of {variable.path} is non-finite",
        }
    # The optimizer's update, and what the forward pass wrote into non-trainable variables.
    for variable in recording.variables:
        if variable.updated_max is not None and not math.isfinite(variable.updated_max):
            return {
                "step": step,
                "stage": "update",
                "layer": layer_of_variable(variable.path),
                "detail": f"the update of step {step} made {variable.path} non-finite",
            }
    if recording.train_loss is not None and not math.isfinite(recording.train_loss):
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
    notes, records = [], []
    try:
        records = inspection_of(record_step(model, first, training=False))["layers"]
    except Exception as error:  # noqa: BLE001 - the outputs are still compared
        notes.append(
            f"per-layer outputs unavailable for this model ({type(error).__name__}: {error}); "
            "comparing the outputs only"
        )
    first_array = _flat_arrays(first)[0] if not isinstance(first, np.ndarray) else first
    all_rows = len(_flat_arrays(x)[0]) if not isinstance(x, np.ndarray) else len(x)
    return {
        "outputs": [np.array(a) for a in _flat_arrays(predicted)],
        "layers": records,
        "rows": int(all_rows if full else len(first_array)),
        "layer_rows": int(len(first_array)),
        "notes": notes,
    }

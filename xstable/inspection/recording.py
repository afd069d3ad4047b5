"""`StepRecording`: one training step taken apart, as plain data.

A recording holds names and arrays only, so it can be written to a file and read in another
process (`to_tree` / `from_tree` give a structure of dicts, lists, numbers, strings and NumPy
arrays, which `xstable.compare.exchange` stores without pickle). Everything that reads a step
(`first_nonfinite`, `xstable.diagnosis.locate_nonfinite`, compare's divergence) reads one.

Arrays may be backend tensors wrapped to be read on first use (see `record_step`): a
recording of a large model costs one small device-to-host copy of the per-tensor maxima, and
a full tensor is copied only when something looks at it. Use `np.asarray` to read one.
"""

import dataclasses

import numpy as np

__all__ = ["LayerCall", "VariableRecord", "StepRecording"]


def _array(value):
    return None if value is None else np.asarray(value)


def _floats(values):
    return np.asarray(values, dtype=np.float64).reshape(-1)


@dataclasses.dataclass
class LayerCall:
    """One layer call of the forward pass.

    Attributes:
        path: Path of the layer from the outermost model down, e.g. `"model/block/dense_2"`;
            a layer called more than once gets `"[call n]"` appended from its second call.
        name: The layer's name.
        class_name: The layer's class name, e.g. `"Dense"`.
        parent: Index (in `StepRecording.calls`) of the call this one ran inside, `None`
            for the outermost call.
        end_order: Rank of this call among all calls by the time it returned.
        outputs: The floating leaves of the call's output (arrays).
        input_max: max |value| of each floating leaf of the call's first argument.
        output_max: max |value| of each of `outputs`.
        input_gradients: Gradient of the loss with respect to each input leaf (empty when
            recorded without probes or without a loss).
        output_gradients: The same for each output leaf.
        input_gradient_max: max |value| of each of `input_gradients`.
        output_gradient_max: max |value| of each of `output_gradients`.
    """

    path: str
    name: str
    class_name: str
    parent: int | None
    end_order: int
    outputs: list = dataclasses.field(default_factory=list)
    input_max: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    output_max: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    input_gradients: list = dataclasses.field(default_factory=list)
    output_gradients: list = dataclasses.field(default_factory=list)
    input_gradient_max: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    output_gradient_max: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @property
    def layer_path(self):
        """`path` without the `"[call n]"` suffix: the layer rather than the call."""
        return self.path.split("[call")[0]

    def to_tree(self):
        return {
            "path": self.path,
            "name": self.name,
            "class": self.class_name,
            "parent": self.parent,
            "end_order": int(self.end_order),
            "outputs": [_array(t) for t in self.outputs],
            "input_max": _floats(self.input_max),
            "output_max": _floats(self.output_max),
            "input_gradients": [_array(t) for t in self.input_gradients],
            "output_gradients": [_array(t) for t in self.output_gradients],
            "input_gradient_max": _floats(self.input_gradient_max),
            "output_gradient_max": _floats(self.output_gradient_max),
        }

    @classmethod
    def from_tree(cls, tree):
        return cls(
            path=tree["path"],
            name=tree["name"],
            class_name=tree["class"],
            parent=tree["parent"],
            end_order=tree["end_order"],
            outputs=list(tree["outputs"]),
            input_max=_floats(tree["input_max"]),
            output_max=_floats(tree["output_max"]),
            input_gradients=list(tree["input_gradients"]),
            output_gradients=list(tree["output_gradients"]),
            input_gradient_max=_floats(tree["input_gradient_max"]),
            output_gradient_max=_floats(tree["output_gradient_max"]),
        )


@dataclasses.dataclass
class VariableRecord:
    """One model variable: its value when the step began, its gradient and its update.

    Attributes:
        path: The variable's path, e.g. `"model/dense/kernel"`.
        owner: Path of the innermost layer holding it (as in `LayerCall.path`).
        trainable: Whether the optimizer updates it (it then has a gradient).
        value: Its value when the step began (array).
        value_max: max |value| (0 for non-floating variables).
        gradient: Gradient of the loss (array); `None` for non-trainable variables and
            without a loss.
        gradient_max: max |gradient|, or `None`.
        updated: Its value after the step (array): the optimizer's update for trainable
            variables, what the forward pass wrote for the others; `None` when the update
            was not recorded.
        updated_max: max |updated|, or `None`.
    """

    path: str
    owner: str
    trainable: bool
    value: object = None
    value_max: float = 0.0
    gradient: object = None
    gradient_max: float | None = None
    updated: object = None
    updated_max: float | None = None

    def to_tree(self):
        return {
            "path": self.path,
            "owner": self.owner,
            "trainable": bool(self.trainable),
            "value": _array(self.value),
            "value_max": float(self.value_max),
            "gradient": _array(self.gradient),
            "gradient_max": None if self.gradient_max is None else float(self.gradient_max),
            "updated": _array(self.updated),
            "updated_max": None if self.updated_max is None else float(self.updated_max),
        }

    @classmethod
    def from_tree(cls, tree):
        return cls(**tree)


@dataclasses.dataclass
class StepRecording:
    """One training step taken apart: every layer call, the loss, gradients and update.

    Attributes:
        model: The model's name.
        calls: Every layer call of the forward pass (`LayerCall`), outermost first, in the
            order the calls began; nested models and their layers included.
        variables: Every model variable (`VariableRecord`), trainable ones first.
        loss: The loss (float), `None` when recorded without targets.
        per_row_loss: The unreduced loss per batch row (array), where the loss allows it.
        batch_size: Rows in the batch, where it can be told.
        optimizer: Class name of the optimizer whose update was recorded, or `None`.
        train_loss: The loss a compiled train step reported from the same state, where one
            ran (compare runs the backend's own `train_on_batch`), else `None`.
        notes: Remarks on what could not be recorded.
    """

    model: str
    calls: list = dataclasses.field(default_factory=list)
    variables: list = dataclasses.field(default_factory=list)
    loss: float | None = None
    per_row_loss: object = None
    batch_size: int | None = None
    optimizer: str | None = None
    train_loss: float | None = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def trainable(self):
        """The trainable variables' records, in the order of `model.trainable_variables`."""
        return [v for v in self.variables if v.trainable]

    def layer_calls(self):
        """The calls the outermost model makes itself: its layers, in the order they ran."""
        return [c for c in self.calls if c.parent == 0]

    def to_tree(self):
        """Returns the recording as dicts, lists, numbers, strings and NumPy arrays."""
        return {
            "model": self.model,
            "calls": [c.to_tree() for c in self.calls],
            "variables": [v.to_tree() for v in self.variables],
            "loss": None if self.loss is None else float(self.loss),
            "per_row_loss": _array(self.per_row_loss),
            "batch_size": None if self.batch_size is None else int(self.batch_size),
            "optimizer": self.optimizer,
            "train_loss": None if self.train_loss is None else float(self.train_loss),
            "notes": [str(n) for n in self.notes],
        }

    @classmethod
    def from_tree(cls, tree):
        """Reads a structure written by `to_tree` back."""
        return cls(
            model=tree["model"],
            calls=[LayerCall.from_tree(c) for c in tree["calls"]],
            variables=[VariableRecord.from_tree(v) for v in tree["variables"]],
            loss=tree["loss"],
            per_row_loss=tree["per_row_loss"],
            batch_size=tree["batch_size"],
            optimizer=tree["optimizer"],
            train_loss=tree["train_loss"],
            notes=list(tree["notes"]),
        )

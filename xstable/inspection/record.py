"""`record_step`: takes one training step of a model apart and returns a `StepRecording`."""

import keras
import numpy as np
from keras import ops

from xstable._layer_tree import variable_owners
from xstable.inspection._compiled_update import updated_weights
from xstable.inspection._instrumented_step import instrumented_step
from xstable.inspection.recording import LayerCall, StepRecording, VariableRecord

__all__ = ["record_step"]

_UPDATE_CHOICES = ("always", "if_finite", "never")


class _OnDevice:
    """A backend tensor, copied to NumPy the first time it is read (most never are)."""

    __slots__ = ("_tensor", "_array")

    def __init__(self, tensor):
        self._tensor = tensor
        self._array = None

    @property
    def shape(self):
        return tuple(self._tensor.shape)

    def __array__(self, dtype=None, copy=None):
        if self._array is None:
            # A copy: torch's convert_to_numpy shares memory with the tensor.
            self._array = np.array(ops.convert_to_numpy(self._tensor))
        return self._array if dtype is None else self._array.astype(dtype)


def _lazy(tensors):
    return [_OnDevice(t) for t in tensors]


def _to_tensor(value):
    if value is None or isinstance(value, (str, bytes)):
        return value
    return ops.convert_to_tensor(value)


def resolve_loss(model, loss, y):
    """Which loss the step computes: `None` (no targets), `("given", fn)` or `("compiled", None)`."""
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
        "A loss is needed to check the loss, backward and update stages. "
        f"Received: loss=None and model {model.name!r} has no compiled loss. "
        "Compile the model or pass `loss=`; pass y=None to check only the forward pass."
    )


def record_step(
    model,
    x,
    y=None,
    *,
    sample_weight=None,
    loss=None,
    optimizer=None,
    training=True,
    probes=True,
    loss_scale=1.0,
    update="if_finite",
):
    """Takes one training step of `model` apart and returns its `StepRecording`.

    The step is the one `fit` would take on the batch: the forward pass (every layer call,
    nested models included), the loss, the gradients, and the optimizer's update. Nothing is
    modified: the step runs in a `keras.StatelessScope` and the update on copies of the
    optimizer state. It is traced (`tf.function` / `jax.jit`) and cached per model, batch
    signature and loss, like `fit`'s train step; torch runs it eagerly, as its `fit` does.

    Args:
        model: A built `keras.Model` or `keras.layers.Layer`.
        x: Input batch, as accepted by `model(x)`.
        y: Targets; `None` records the forward pass only.
        sample_weight: Optional per-row weights.
        loss: Loss to use instead of the compiled one (a `keras.losses.Loss`, a name or a
            callable `loss(y_true, y_pred)`).
        optimizer: Optimizer whose update to record; `None` records no update.
        training: Bool, the forward pass's `training` argument.
        probes: Bool, also record the gradient with respect to every layer input and
            output (zero tensors added to them). A probed output is a new tensor, so a loss
            that reads the logits a sigmoid/softmax output carries (TensorFlow's
            cross-entropies) computes from probabilities instead; `probes=False` keeps the
            loss exactly as `fit` computes it.
        loss_scale: Float, the gradients are those of `loss * loss_scale` (a
            `LossScaleOptimizer`'s scale, to see the gradients its update sees).
        update: `"if_finite"` records the update only when every value before it is
            finite (a non-finite gradient is found before the update is looked at),
            `"always"`, or `"never"`.

    Returns:
        A `StepRecording`. Its arrays are read from the device when first looked at (or by
        `to_tree`): do that before the model's variables change, as on torch they may
        share memory with them.

    Raises:
        ValueError: If `y` is given but there is neither `loss` nor a compiled loss, or if
            `update` is not one of its choices.
    """
    if update not in _UPDATE_CHOICES:
        raise ValueError(
            f"`update` must be one of {_UPDATE_CHOICES}. Received: update={update!r}."
        )
    x = keras.tree.map_structure(_to_tensor, x)
    y = None if y is None else keras.tree.map_structure(_to_tensor, y)
    if sample_weight is not None:
        sample_weight = _to_tensor(sample_weight)
    if not model.built:
        model(x)
    loss_fn = resolve_loss(model, loss, y)
    program = instrumented_step(model, x, y, sample_weight, loss_fn, training, probes)
    step = program.run(x, y, sample_weight, loss_scale)
    recording = _recording(model, step, loss_fn is not None)
    everything_finite = bool(np.all(np.isfinite(step.summary)))
    if (
        optimizer is not None
        and loss_fn is not None
        and (update == "always" or (update == "if_finite" and everything_finite))
    ):
        new_values, maxima = updated_weights(
            optimizer, step.weights, step.weight_values, step.weight_grads
        )
        for record, value, peak in zip(recording.trainable, new_values, maxima, strict=True):
            record.updated = _OnDevice(value)
            record.updated_max = float(peak)
        recording.optimizer = type(optimizer).__name__
    return recording


def _batch_size(y_pred):
    for leaf in keras.tree.flatten(y_pred):
        if getattr(leaf, "shape", None) is not None and len(leaf.shape):
            return int(leaf.shape[0])
    return None


def _recording(model, step, has_loss):
    calls = []
    for record in step.records:
        calls.append(
            LayerCall(
                path=record.path,
                name=record.name,
                class_name=record.class_name,
                parent=record.parent,
                end_order=record.end_order,
                outputs=_lazy(step.outputs[record.index]),
                input_max=step.in_max[record.index],
                output_max=step.out_max[record.index],
                input_gradients=_lazy(step.in_grads[record.index]),
                output_gradients=_lazy(step.out_grads[record.index]),
                input_gradient_max=step.in_grad_max[record.index],
                output_gradient_max=step.out_grad_max[record.index],
            )
        )
    owners = variable_owners(model)
    value_max = {id(v): float(m) for v, m in zip(step.checked_weights, step.checked_weight_max)}
    variables = []
    for index, variable in enumerate(step.weights):
        variables.append(
            VariableRecord(
                path=variable.path,
                owner=owners.get(id(variable), model.name),
                trainable=True,
                value=_OnDevice(step.weight_values[index]),
                value_max=value_max.get(id(variable), 0.0),
                gradient=_OnDevice(step.weight_grads[index]) if has_loss else None,
                gradient_max=float(step.weight_grad_max[index]) if has_loss else None,
            )
        )
    for index, variable in enumerate(step.non_trainable):
        variables.append(
            VariableRecord(
                path=variable.path,
                owner=owners.get(id(variable), model.name),
                trainable=False,
                value=_OnDevice(ops.copy(ops.convert_to_tensor(variable))),
                value_max=value_max.get(id(variable), 0.0),
                updated=_OnDevice(step.non_trainable_after[index]),
                updated_max=float(step.non_trainable_after_max[index]),
            )
        )
    loss = None
    if has_loss:
        loss = float(np.asarray(ops.convert_to_numpy(step.loss), dtype=np.float64))
    return StepRecording(
        model=model.name,
        calls=calls,
        variables=variables,
        loss=loss,
        per_row_loss=None if step.per_row is None else _OnDevice(step.per_row),
        batch_size=_batch_size(step.y_pred),
    )

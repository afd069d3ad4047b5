"""The instrumented training step behind `record_step`, traced once per model and signature.

One call computes everything a recording holds: the forward pass with every layer call
recorded, the loss, the per-row loss, the gradients with respect to the weights and (with
probes) to zero probes on every layer input and output, and the non-trainable variables'
values after the forward pass (batch-normalization statistics). On TensorFlow and JAX the step is traced into a
`tf.function` / `jax.jit` (the backend's default `fit` mode) and cached per model, so a
repeated call costs one compiled run plus one small device-to-host copy: a vector with
max|value| of every recorded tensor, gradient and weight. The full tensors stay on the
device and are read only when that vector shows a non-finite value. On torch, whose `fit`
is eager, the same function runs eagerly.

Nothing is modified: the step runs in a `keras.StatelessScope` whose state mapping holds
the values passed in, so neither weights, batch-norm statistics, seed generators nor
metrics change, and `FiniteCheck` layers are suspended (always, so the traces need no key
for it).
"""

import weakref

import keras
import numpy as np
from keras import ops

from xstable._layer_tree import is_floating, walk_layers
from xstable.backend import CompiledFunction, value_and_probe_gradients
from xstable.inspection._call_recorder import CallRecorder
from xstable.layers.finite_check import suspend_checks

__all__ = []

# Per model: {signature: _StepProgram}. Weak keys, and programs refer to the model only
# weakly, so a cached trace never keeps a model alive.
_PROGRAMS = weakref.WeakKeyDictionary()
# Traces kept per model (input shapes, losses); the oldest is dropped beyond this.
_MAX_PROGRAMS_PER_MODEL = 8
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def instrumented_step(model, x, y, sample_weight, loss_fn, training=True, probes=True):
    """Returns the (cached) `_StepProgram` for this model, batch signature and loss.

    `probes=False` records no layer gradients, only the weights' ones, and leaves every
    layer's output tensor as the layer returned it: a loss that reads the logits a
    sigmoid/softmax output carries (TensorFlow's cross-entropies) then sees them as `fit`
    does.
    """
    trainable = list(model.trainable_variables)
    non_trainable = list(model.non_trainable_variables)
    # The traced step bakes in the layer tree and the variable list: a change in either
    # (layers added or removed, a model rebuilt) makes every earlier trace stale.
    # Variables are compared by id (the programs hold them, so ids are not reused while
    # cached); layers by weak reference, so that a layer created where a dropped one lived
    # does not look the same.
    layers = [layer for _, layer, _ in walk_layers(model)]
    variables_key = (tuple(id(v) for v in trainable), tuple(id(v) for v in non_trainable))
    loss_owner = _loss_owner(model, loss_fn)
    signature = (
        _signature(x),
        _signature(y),
        _signature(sample_weight),
        None if loss_fn is None else loss_fn[0],
        tuple(id(o) for o in loss_owner),
        bool(training),
        bool(probes),
    )
    programs = _PROGRAMS.get(model)
    if (
        programs is None
        or programs["variables"] != variables_key
        or len(programs["layers"]) != len(layers)
        or any(ref() is not layer for ref, layer in zip(programs["layers"], layers, strict=True))
    ):
        programs = {
            "variables": variables_key,
            "layers": [weakref.ref(layer) for layer in layers],
            "steps": {},
        }
        _PROGRAMS[model] = programs
    steps = programs["steps"]
    program = steps.get(signature)
    if program is None:
        if len(steps) >= _MAX_PROGRAMS_PER_MODEL:
            steps.pop(next(iter(steps)))
        program = _StepProgram(
            model, trainable, non_trainable, loss_fn, loss_owner, training, probes
        )
        steps[signature] = program
    return program


def _loss_owner(model, loss_fn):
    """Objects whose identity decides which loss the step computes (kept alive with it)."""
    if loss_fn is None:
        return ()
    if loss_fn[0] == "given":
        return (loss_fn[1],)
    # Recompiling replaces the optimizer (and possibly the loss): retrace then.
    return (getattr(model, "loss", None), getattr(model, "optimizer", None))


def _signature(tree):
    if tree is None:
        return None
    leaves = tuple(
        (tuple(leaf.shape), str(leaf.dtype)) if hasattr(leaf, "shape") else repr(leaf)
        for leaf in keras.tree.flatten(tree)
    )
    return (repr(keras.tree.map_structure(lambda _: 0, tree)), leaves)


def max_abs_vector(tensors):
    """One float32 vector of max|t| per tensor, computed where the tensors live.

    NaN and Inf propagate; finite values beyond float32's range (float64 models) are
    clamped to its largest value so that they do not read as overflow.
    """
    maxima = []
    for t in tensors:
        if int(np.prod(t.shape)) == 0:
            maxima.append(ops.zeros((), "float32"))
            continue
        peak = ops.max(ops.abs(t))
        if keras.backend.standardize_dtype(peak.dtype) == "float64":
            peak = ops.where(ops.isfinite(peak), ops.minimum(peak, _FLOAT32_MAX), peak)
        maxima.append(ops.cast(peak, "float32"))
    if not maxima:
        return ops.zeros((0,), "float32")
    return ops.stack(maxima)


class _StepProgram:
    """The traced instrumented step of one model for one batch signature and loss."""

    def __init__(self, model, trainable, non_trainable, loss_fn, loss_owner, training, probes):
        self._model = weakref.ref(model)
        self.training = bool(training)
        self.probes = bool(probes)
        self.trainable = trainable
        self.non_trainable = non_trainable
        self.loss_fn = loss_fn
        self._loss_owner = loss_owner
        variables = trainable + non_trainable
        self.checked_weights = [v for v in variables if is_floating(v)]
        self._checked_positions = [i for i, v in enumerate(variables) if is_floating(v)]
        self.checked_non_trainable = [i for i, v in enumerate(non_trainable) if is_floating(v)]
        # Filled in while tracing: the call records (paths, nesting, order) and where each
        # maximum sits in the summary vector.
        self.records = None
        self.layout = None
        self.compiled = CompiledFunction(
            self._step, variable_groups=[self.trainable, self.non_trainable]
        )

    def run(self, x, y, sample_weight, loss_scale=1.0):
        scale = ops.convert_to_tensor(np.asarray(loss_scale, dtype="float32"))
        outputs = self.compiled(x, y, sample_weight, scale)
        summary = np.asarray(ops.convert_to_numpy(outputs["summary"]), dtype=np.float64)
        return StepResult(self, outputs, summary)

    def _loss(self, model, x, y, sample_weight, y_pred):
        kind, loss_object = self.loss_fn
        if kind == "compiled":
            return model.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
        if isinstance(loss_object, keras.losses.Loss):
            value = loss_object(y, y_pred, sample_weight=sample_weight)
        else:
            per_sample = loss_object(y, y_pred)
            if sample_weight is None:
                value = ops.mean(per_sample)
            else:
                weights = ops.cast(sample_weight, per_sample.dtype)
                value = ops.sum(per_sample * weights) / ops.maximum(ops.sum(weights), 1e-12)
        extra = model.losses
        if extra:
            value = value + ops.sum(ops.stack([ops.cast(e, value.dtype) for e in extra]))
        return value

    def _per_sample_loss(self, model, y, y_pred):
        """Unreduced loss per row where the loss allows it, else None."""
        kind, loss_object = self.loss_fn
        if kind == "compiled":
            loss_object = model.loss
            if isinstance(loss_object, (list, tuple, dict)):
                return None
            loss_object = keras.losses.get(loss_object)
        try:
            with keras.StatelessScope():
                if isinstance(loss_object, keras.losses.Loss):
                    return loss_object.call(y, y_pred)
                if callable(loss_object):
                    return loss_object(y, y_pred)
        except Exception:  # noqa: BLE001 - rows are a bonus; the stage is found without them
            return None
        return None

    def _step(self, group_values, x, y, sample_weight, loss_scale):
        """The step itself: runs eagerly, or while tracing (see `CompiledFunction`).

        The gradients are those of `loss * loss_scale` (a `LossScaleOptimizer`'s scale, to
        see the gradients its update sees); the loss returned is the unscaled one.
        """
        trainable_values, non_trainable_values = group_values
        model = self._model()
        holder = {}

        def forward(weight_values, make_probe):
            mapping = list(zip(self.trainable, weight_values, strict=True)) + list(
                zip(self.non_trainable, non_trainable_values, strict=True)
            )
            recorder = CallRecorder(model, make_probe)
            # FiniteCheck layers in the model would raise/count on the diagnostic step.
            with suspend_checks(), keras.StatelessScope(
                state_mapping=mapping, collect_losses=True
            ) as scope:
                with recorder:
                    y_pred = model(x, training=self.training)
                loss = (
                    self._loss(model, x, y, sample_weight, y_pred)
                    if self.loss_fn is not None
                    else None
                )
                # What the forward pass wrote (moving statistics), else the value passed in.
                after = [scope.get_current_value(v) for v in self.non_trainable]
            holder["records"] = recorder.records
            tensors = {
                "inputs": [r.inputs for r in recorder.records],
                "outputs": [r.outputs for r in recorder.records],
                "y_pred": y_pred,
                "loss": loss,
                "non_trainable_after": [
                    before if value is None else value
                    for before, value in zip(non_trainable_values, after, strict=True)
                ],
            }
            if loss is None:
                return None, tensors
            return loss * ops.cast(loss_scale, loss.dtype), tensors

        if self.loss_fn is None:
            _, tensors = forward(list(trainable_values), None)
            weight_grads, probe_grads = [], []
        else:
            _, tensors, weight_grads, probe_grads = value_and_probe_gradients(
                lambda weights, make_probe: forward(weights, make_probe if self.probes else None),
                trainable_values,
            )
        loss = tensors["loss"]
        records = holder["records"]
        all_values = list(trainable_values) + list(non_trainable_values)
        groups = {
            "loss": [loss] if loss is not None else [],
            "weights": [all_values[i] for i in self._checked_positions],
            # From the returned tensors, not the records: under jax.grad the records hold
            # tracers of the inner transformation.
            "activations": [
                t
                for ins, outs in zip(tensors["inputs"], tensors["outputs"], strict=True)
                for t in ins + outs
            ],
            "weight_grads": weight_grads,
            "probe_grads": probe_grads,
            "non_trainable_after": [
                tensors["non_trainable_after"][i] for i in self.checked_non_trainable
            ],
        }
        layout, position = {}, 0
        for name, group in groups.items():
            layout[name] = (position, position + len(group))
            position += len(group)
        summary = max_abs_vector([t for group in groups.values() for t in group])
        per_row = None
        if loss is not None:
            per_row = self._per_sample_loss(model, y, tensors["y_pred"])
        for record in records:
            # Keep only the metadata: the traced tensors mean nothing outside the trace.
            record.input_count = len(record.inputs)
            record.output_count = len(record.outputs)
            record.inputs = record.outputs = None
        self.records = records
        self.layout = layout
        return {
            "summary": summary,
            "weight_values": list(trainable_values),
            "tensors": tensors,
            "loss": loss,
            "per_row": per_row,
            "weight_grads": weight_grads,
            "probe_grads": probe_grads,
            "non_trainable_after": tensors["non_trainable_after"],
        }


class StepResult:
    """What one run of the step produced: host-side maxima, device-side full tensors."""

    def __init__(self, program, outputs, summary):
        records = program.records
        layout = program.layout
        self.summary = summary
        self.records = records
        self.y_pred = outputs["tensors"]["y_pred"]
        self.inputs = outputs["tensors"]["inputs"]
        self.outputs = outputs["tensors"]["outputs"]
        self.per_row = outputs["per_row"]
        loss_span = summary[slice(*layout["loss"])]
        self.loss_value = float(loss_span[0]) if len(loss_span) else None
        self.checked_weights = program.checked_weights
        self.checked_weight_max = summary[slice(*layout["weights"])]
        self.weights = program.trainable
        self.weight_values = outputs["weight_values"]
        self.weight_grads = outputs["weight_grads"]
        self.weight_grad_max = summary[slice(*layout["weight_grads"])]

        activations = summary[slice(*layout["activations"])]
        self.in_max, self.out_max, position = [], [], 0
        for record in records:
            self.in_max.append(activations[position : position + record.input_count])
            position += record.input_count
            self.out_max.append(activations[position : position + record.output_count])
            position += record.output_count

        probe_grads = outputs["probe_grads"]
        probe_max = summary[slice(*layout["probe_grads"])]
        self.in_grads = [[probe_grads[i] for i in r.input_probes] for r in records]
        self.out_grads = [[probe_grads[i] for i in r.output_probes] for r in records]
        self.in_grad_max = [probe_max[r.input_probes] for r in records]
        self.out_grad_max = [probe_max[r.output_probes] for r in records]

        self.loss = outputs["loss"]
        self.non_trainable = program.non_trainable
        self.non_trainable_after = outputs["non_trainable_after"]
        after_max = summary[slice(*layout["non_trainable_after"])]
        self.non_trainable_after_max = np.zeros(len(program.non_trainable))
        self.non_trainable_after_max[program.checked_non_trainable] = after_max

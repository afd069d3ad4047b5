"""Model and compile checks for diagnose: loss/activation pairing, learning rate, float16,
saturating activations, custom losses.

Each check reads `ModelFacts` plus a small sample of the data and returns `Finding`s; the only
model computations are forward passes on at most a few hundred rows and loss evaluations.
"""

import keras
import numpy as np

from xstable import backend
from xstable.diagnosis._data_checks import AUTOSCALE_EXAMPLE, AUTOSCALE_FIX
from xstable.diagnosis._model_facts import (
    PROBABILITY_ACTIVATIONS,
    SATURATING_ACTIVATIONS,
    activation_name,
)
from xstable.diagnosis.findings import Finding
from xstable.training.outcome import trivial_loss

__all__ = [
    "ADAPTIVE_OPTIMIZERS",
    "LOGITS_FIX",
    "suggested_learning_rate",
    "check_output_start",
    "check_probability_loss",
    "check_sgd_step",
    "check_adaptive_learning_rate",
    "check_float16",
    "check_saturating_activations",
    "check_custom_loss",
]

ADAPTIVE_OPTIMIZERS = (
    "Adam",
    "AdamW",
    "Adamax",
    "Nadam",
    "RMSprop",
    "Adagrad",
    "Lion",
    "Lamb",
    "Muon",
)
# Keras clips probabilities to [epsilon, 1 - epsilon] with epsilon = 1e-7 on torch and JAX.
_KERAS_EPSILON = 1e-7
# Units whose activation derivative is below ~1e-4 pass almost no gradient.
_SATURATION_MARGIN = 1e-4
_SATURATED_FRACTION = 0.5
# Adam-like optimizers move each weight by about `learning_rate` per step.
_ADAPTIVE_LR_WARNING = 0.25
_ADAPTIVE_LR_ERROR = 1.0
_FLOAT16_MAX = 65504.0
# Inputs whose typical magnitude is above this are scaled before any learning-rate advice.
_LARGE_INPUT = 10.0

# Keras's cross-entropy of logits for each probability-space family: exact on every backend,
# finite loss and gradient however saturated the output.
_LOGITS_LOSS_FOR_FAMILY = {
    "binary_crossentropy": "keras.losses.BinaryCrossentropy",
    "categorical_crossentropy": "keras.losses.CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "keras.losses.SparseCategoricalCrossentropy",
}
LOGITS_FIX = "keras.losses.BinaryCrossentropy(from_logits=True)"
_LOGITS_WHY = (
    "with a linear output and from_logits=True, Keras computes the cross-entropy from the "
    "logits exactly on every backend: the loss and gradient stay finite and informative however "
    "saturated the prediction, where a probability-space loss takes log(0) (hand-written), or "
    "clips p (Keras on torch/JAX) and passes no gradient"
)
# A step of an Adam-like optimizer is about `learning_rate`; a tenth of the typical weight
# keeps it small next to what it moves. A plain SGD step on squared error is stable below
# 1 / lambda_max; a tenth of it leaves room for the hidden layers' own curvature.
_STEP_MARGIN = 0.1
# The model's loss at its initial weights, this many times the trivial predictor's loss,
# means it starts far from the targets (an output centred on the target mean, with a spread
# of its own as large as the targets', scores about 2x).
_OUTPUT_START_RATIO = 2.0


def suggested_learning_rate(limit):
    """The largest of 1, 2, 5 x 10^k that is at most `_STEP_MARGIN * limit`.

    Example:

    >>> suggested_learning_rate(0.28)
    0.02
    """
    target = _STEP_MARGIN * float(limit)
    if not np.isfinite(target) or target <= 0:
        return None
    exponent = int(np.floor(np.log10(target)))
    for mantissa in (5.0, 2.0, 1.0):
        value = mantissa * 10.0**exponent
        if value <= target * (1 + 1e-9):
            return float(f"{value:.3g}")
    return float(f"{10.0**exponent:.3g}")


def check_probability_loss(facts, predictions):
    """A sigmoid/softmax output trained with a probability-space cross-entropy."""
    if (
        facts.output_activation not in PROBABILITY_ACTIVATIONS
        or facts.loss_family not in _LOGITS_LOSS_FOR_FAMILY
        or facts.loss_from_logits
        or facts.loss_is_xstable
    ):
        return []
    evidence = {
        "output_activation": facts.output_activation,
        "loss": facts.loss_name,
        "from_logits": facts.loss_from_logits,
        "backend": backend.NAME,
    }
    if predictions is not None and predictions.size:
        p = predictions[np.isfinite(predictions)]
        if p.size:
            evidence["sample_outputs"] = int(p.size)
            evidence["fraction_clipped_by_keras_epsilon"] = float(
                np.mean((p <= _KERAS_EPSILON) | (p >= 1 - _KERAS_EPSILON))
            )
            evidence["fraction_within_1e-4_of_0_or_1"] = float(
                np.mean((p <= _SATURATION_MARGIN) | (p >= 1 - _SATURATION_MARGIN))
            )
    saturated = evidence.get("fraction_within_1e-4_of_0_or_1", 0.0)
    component = _LOGITS_LOSS_FOR_FAMILY[facts.loss_family]
    return [
        Finding(
            code="probability-output-crossentropy",
            severity="warning",
            title=(
                f"`{facts.output_activation}` output trained with probability-space "
                f"`{facts.loss_name}`; {saturated:.0%} of sample outputs are within 1e-4 of 0 "
                "or 1"
            ),
            evidence=evidence,
            fix=f"{component}(from_logits=True)",
            example="logits_model, loss = xstable.losses.to_logits_model(model)  # same weights, "
            "no output activation, the matching from_logits loss; "
            "logits_model.compile(loss=loss, optimizer=...)",
            why="TF recovers the logits from the sigmoid/softmax and is stable; torch and JAX "
            "clip p to [1e-7, 1-1e-7], so saturated outputs give a different loss and a zero "
            "gradient there, and in float16 the clip does nothing and log(0) appears; "
            + _LOGITS_WHY,
        )
    ]


def _first_layer_curvature(x_matrix):
    """Largest eigenvalue of X^T X / n (the MSE curvature scale of a linear first layer)."""
    finite_rows = np.isfinite(x_matrix).all(axis=1)
    rows = x_matrix[finite_rows]
    if rows.shape[0] == 0:
        return None, None
    features = rows.shape[1]
    if features <= 2048:
        gram = rows.T @ rows / rows.shape[0]
        return float(np.linalg.eigvalsh(gram)[-1]), "exact"
    # Upper bound: the trace of X^T X / n, i.e. the mean squared row norm.
    return float(np.mean(np.sum(rows * rows, axis=1))), "trace bound"


def check_sgd_step(facts, x_matrix, typical_magnitude):
    """Plain SGD whose learning rate is beyond the stability limit for these inputs.

    `x_matrix` is what the first weighted layer sees: the inputs after an `AutoScale` the model
    starts with, if any.
    """
    if facts.optimizer_name != "SGD" or facts.learning_rate is None or x_matrix is None:
        return []
    curvature, method = _first_layer_curvature(x_matrix)
    if not curvature:
        return []
    # Gradient descent on mean squared error for a linear layer diverges once
    # learning_rate * 2 * lambda_max(X^T X / n) > 2.
    stability = facts.learning_rate * curvature
    if stability <= 1.0:
        return []
    suggested = suggested_learning_rate(1.0 / curvature)
    large_inputs = typical_magnitude > _LARGE_INPUT or curvature > _LARGE_INPUT**2
    guarded = (
        f"optimizer=xstable.optimizers.GuardedOptimizer(keras.optimizers.SGD({suggested:g}), "
        "global_clipnorm=1.0)"
    )
    return [
        Finding(
            code="sgd-step-too-large",
            severity="error" if stability > 100 else "warning",
            title=(
                f"plain SGD with learning_rate={facts.learning_rate:g} on inputs of magnitude "
                f"~{typical_magnitude:.3g}: learning_rate x lambda_max(X^T X/n) = "
                f"{stability:.3g} (gradient descent on squared error diverges above 1)"
            ),
            evidence={
                "optimizer": facts.optimizer_name,
                "learning_rate": facts.learning_rate,
                "lambda_max_xtx_over_n": curvature,
                "lambda_method": method,
                "learning_rate_times_lambda": stability,
                "largest_stable_learning_rate_linear_mse": 1.0 / curvature,
                "suggested_learning_rate": suggested,
                "input_magnitude_p95": typical_magnitude,
            },
            fix=AUTOSCALE_FIX if large_inputs else "xstable.optimizers.GuardedOptimizer",
            example=(AUTOSCALE_EXAMPLE + "; then, if still flagged, " if large_inputs else "")
            + guarded,
            why="the curvature of the loss in the first layer's weights grows with the square "
            "of the input scale, so each SGD step overshoots by more than it corrects; the "
            "suggested rate is a tenth of the linear limit 1 / lambda_max, and the global norm "
            "clip bounds the steps of the layers above",
        )
    ]


def _typical_weight_magnitude(model):
    magnitudes = []
    for variable in model.trainable_weights:
        if len(variable.shape) >= 2:  # kernels; biases start at 0
            values = np.abs(np.asarray(keras.ops.convert_to_numpy(variable.value)))
            magnitudes.append(values.ravel())
    if not magnitudes:
        return None
    values = np.concatenate(magnitudes)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def check_adaptive_learning_rate(facts, model):
    """An Adam-family learning rate that is large next to the weights it moves."""
    if facts.optimizer_name not in ADAPTIVE_OPTIMIZERS or facts.learning_rate is None:
        return []
    weight_scale = _typical_weight_magnitude(model)
    if not weight_scale:
        return []
    ratio = facts.learning_rate / weight_scale
    if ratio < _ADAPTIVE_LR_WARNING:
        return []
    suggested = suggested_learning_rate(weight_scale)
    return [
        Finding(
            code="learning-rate-too-large",
            severity="error" if ratio >= _ADAPTIVE_LR_ERROR else "warning",
            title=(
                f"{facts.optimizer_name} learning_rate={facts.learning_rate:g} moves each "
                f"weight by up to ~{facts.learning_rate:g} per step, {ratio:.3g}x the median "
                f"kernel weight magnitude {weight_scale:.3g}"
            ),
            evidence={
                "optimizer": facts.optimizer_name,
                "learning_rate": facts.learning_rate,
                "median_abs_kernel_weight": weight_scale,
                "ratio": ratio,
                "suggested_learning_rate": suggested,
                "warning_ratio": _ADAPTIVE_LR_WARNING,
                "error_ratio": _ADAPTIVE_LR_ERROR,
            },
            fix="xstable.optimizers.GuardedOptimizer",
            example=(
                f"optimizer=xstable.optimizers.GuardedOptimizer(keras.optimizers."
                f"{facts.optimizer_name}(learning_rate={suggested:g}), global_clipnorm=1.0)"
            ),
            why="adaptive optimizers normalise the gradient, so a step is about "
            "learning_rate whatever the gradient; steps larger than the weights overshoot "
            "and activations and losses grow until they overflow. The suggested rate is a "
            "tenth of the median kernel weight",
        )
    ]


def check_float16(facts, input_magnitude_max):
    """float16 compute without loss scaling, and inputs beyond float16's range."""
    if "float16" not in facts.compute_dtypes:
        return []
    findings = []
    if not facts.has_loss_scaling:
        findings.append(
            Finding(
                code="float16-without-loss-scaling",
                severity="warning",
                title=(
                    f"layers compute in float16 but the optimizer "
                    f"({' > '.join(facts.optimizer_wrappers + [facts.optimizer_name])}) has no "
                    "loss scaling"
                ),
                evidence={
                    "compute_dtypes": facts.compute_dtypes,
                    "optimizer_chain": facts.optimizer_wrappers + [facts.optimizer_name],
                    "float16_smallest_normal": 6.104e-05,
                },
                fix="keras.optimizers.LossScaleOptimizer",
                example="optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())"
                "  # or keras.mixed_precision.set_dtype_policy('mixed_float16') before building",
                why="float16 gradients below 6e-5 lose precision and below 6e-8 become 0; loss "
                "scaling shifts them into range and skips steps that overflow",
            )
        )
    if input_magnitude_max is not None and input_magnitude_max > _FLOAT16_MAX:
        findings.append(
            Finding(
                code="float16-input-overflow",
                severity="error",
                title=(
                    f"inputs reach {input_magnitude_max:.3g}, beyond float16's largest value "
                    f"{_FLOAT16_MAX:g}: they become Inf when cast"
                ),
                evidence={"input_abs_max": input_magnitude_max, "float16_max": _FLOAT16_MAX},
                fix=AUTOSCALE_FIX,
                example="keras.Sequential([keras.Input(shape), "
                "xstable.layers.AutoScale(dtype='float32'), ...])  # scale before float16",
                why="a cast to float16 turns every |x| > 65504 into Inf",
            )
        )
    return findings


def _saturating_layers(model):
    output_layer = model.layers[-1] if getattr(model, "layers", None) else None
    chosen = []
    for layer in getattr(model, "layers", []):
        if layer is output_layer:
            continue
        if isinstance(layer, keras.layers.Activation) or hasattr(layer, "activation"):
            name = activation_name(getattr(layer, "activation", None))
            if name in SATURATING_ACTIVATIONS:
                chosen.append((layer, name))
    return chosen


def _saturated_fraction(values, name):
    if name in ("sigmoid", "hard_sigmoid"):
        return float(np.mean((values <= _SATURATION_MARGIN) | (values >= 1 - _SATURATION_MARGIN)))
    return float(np.mean(np.abs(values) >= 1 - _SATURATION_MARGIN))


def check_saturating_activations(model, x_sample, typical_magnitude):
    """Hidden sigmoid/tanh layers whose units are mostly saturated on the data."""
    layers = _saturating_layers(model)
    if not layers or x_sample is None:
        return [], None
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        probe = keras.Model(inputs, [layer.output for layer, _ in layers])
        outputs = probe(x_sample, training=False)
    except (AttributeError, ValueError, TypeError):
        # Subclassed models have no symbolic layer outputs to probe.
        return [], "activation saturation not probed: the model has no symbolic inputs"
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    per_layer = {}
    for (layer, name), output in zip(layers, outputs, strict=True):
        values = np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            per_layer[layer.name] = (name, _saturated_fraction(values, name))
    saturated = {k: v for k, v in per_layer.items() if v[1] >= _SATURATED_FRACTION}
    if not saturated:
        return [], None
    worst_layer = max(saturated, key=lambda key: saturated[key][1])
    name, fraction = saturated[worst_layer]
    return [
        Finding(
            code="saturated-activation",
            severity="warning",
            title=(
                f"{fraction:.0%} of `{worst_layer}` ({name}) outputs are saturated (derivative "
                f"< 1e-4) on the data; inputs have magnitude ~{typical_magnitude:.3g}"
            ),
            evidence={
                "saturated_fraction_by_layer": {
                    key: round(value[1], 4) for key, value in per_layer.items()
                },
                "activation_by_layer": {key: value[0] for key, value in per_layer.items()},
                "input_magnitude_p95": typical_magnitude,
                "sample_rows": int(np.shape(keras.tree.flatten(x_sample)[0])[0]),
            },
            fix=AUTOSCALE_FIX,
            example=AUTOSCALE_EXAMPLE,
            why="a saturated sigmoid/tanh passes almost no gradient, so the layers below stop "
            "learning while the rest compensates with ever larger weights",
        )
    ], None


def _probe_predictions(facts, y_true):
    """Adversarial predictions of the shape of `y_true`, as the output activation allows."""
    candidates = {"y_pred = y_true": y_true, "y_pred = 0": np.zeros_like(y_true)}
    if facts.output_activation in PROBABILITY_ACTIVATIONS:
        # A float32 sigmoid returns exactly 0 below about -88 and exactly 1 above about 17.
        candidates["y_pred = 1 (saturated)"] = np.ones_like(y_true)
        candidates["y_pred = 1 - y_true (confidently wrong)"] = 1.0 - np.clip(y_true, 0, 1)
    else:
        candidates["y_pred = y_true + 1e3"] = y_true + 1e3
        candidates["y_pred = -1e3"] = np.full_like(y_true, -1e3)
    return candidates


def check_custom_loss(facts, y_sample, output_shape_tail):
    """A user-written loss: evaluate it where losses usually break (0, 1, exact match)."""
    if facts.loss_family != "custom" or y_sample is None or not callable(facts.loss_object):
        return []
    y_true = np.asarray(y_sample, dtype=np.float32)
    if output_shape_tail is not None and y_true.ndim == 1:
        y_true = y_true.reshape((-1, *output_shape_tail))
    broken = {}
    evaluated = 0
    for label, y_pred in _probe_predictions(facts, y_true).items():
        try:
            value = facts.loss_object(
                keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred)
            )
            value = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)
        except Exception as error:  # A custom loss may fail on any input; that is a finding.
            broken[label] = f"raised {type(error).__name__}: {error}"[:200]
            continue
        evaluated += 1
        if not np.isfinite(value).all():
            broken[label] = f"{int((~np.isfinite(value)).sum())} non-finite of {value.size}"
    evidence = {
        "loss": facts.loss_name,
        "probes": evaluated + len(broken),
        "nonfinite_or_failing_probes": broken,
    }
    if broken:
        severity = "error"
        title = (
            f"custom loss `{facts.loss_name}` is non-finite at {len(broken)} of "
            f"{evaluated + len(broken)} probe points: {', '.join(broken)}"
        )
    else:
        severity = "info"
        title = (
            f"custom loss `{facts.loss_name}` is not a Keras or xstable loss; its value was "
            f"finite at all {evaluated} probe points (gradients not probed)"
        )
    if broken and facts.output_activation in PROBABILITY_ACTIVATIONS:
        # A hand-written cross-entropy of a sigmoid/softmax output: the exact fix is Keras's
        # cross-entropy of the logits, not masking the non-finite rows.
        fix = LOGITS_FIX
        example = (
            "keras.layers.Dense(units)  # output without activation; "
            f"model.compile(loss={LOGITS_FIX}, ...)"
        )
        why = _LOGITS_WHY
    else:
        fix = "xstable.losses.SafeLoss"
        example = f"model.compile(loss=xstable.losses.SafeLoss({facts.loss_name}), ...)"
        why = (
            "hand-written losses often take log or sqrt of values that reach 0, or divide "
            "by them; SafeLoss masks non-finite per-sample losses out of the mean and counts "
            "them, and xstable.numerics.safe_log/safe_sqrt give finite values and gradients"
        )
    return [
        Finding(
            code="custom-loss",
            severity=severity,
            title=title,
            evidence=evidence,
            fix=fix,
            example=example,
            why=why,
        )
    ]


def _loss_value(facts, y_true, y_pred):
    loss = (
        keras.losses.get(facts.loss_object)
        if isinstance(facts.loss_object, str)
        else (facts.loss_object)
    )
    value = loss(keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred))
    return float(np.mean(np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)))


def check_output_start(facts, model, x_sample, y_sample):
    """A model whose initial predictions are far from the trivial predictor's.

    At its initial weights a model should predict about what the trivial predictor does (the
    target mean, the label prior). A linear output starts near 0 whatever the targets' mean
    and scale, and a forced output bias saturates a sigmoid: the first steps are then spent
    (or wasted) moving the output, and a stronger optimizer to get there overshoots.
    """
    if x_sample is None or y_sample is None or facts.loss_object is None:
        return []
    if facts.loss_family in ("multiple", "none", "sparse_categorical_crossentropy"):
        return []
    if not callable(facts.loss_object) and not isinstance(facts.loss_object, str):
        return []
    y_true = np.asarray(y_sample, dtype=np.float32)
    try:
        output = model(x_sample, training=False)
        if isinstance(output, (list, tuple, dict)):
            return []
        y_pred = np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float32)
        if y_true.ndim == 1 and y_pred.ndim == 2:
            y_true = y_true.reshape(-1, y_pred.shape[1])
        initial = _loss_value(facts, y_true, y_pred)
        trivial = trivial_loss(facts.loss_object, y_true)
    except (TypeError, ValueError):
        return []
    if not trivial > 0 or (np.isfinite(initial) and initial <= _OUTPUT_START_RATIO * trivial):
        return []
    probability = facts.output_activation in PROBABILITY_ACTIVATIONS or facts.loss_from_logits
    mean = float(np.mean(y_true))
    evidence = {
        "initial_loss": initial,
        "trivial_loss": trivial,
        "ratio": initial / trivial if np.isfinite(initial) else float("inf"),
        "mean_prediction": float(np.mean(y_pred[np.isfinite(y_pred)])) if y_pred.size else None,
        "target_mean": mean,
        "target_std": float(np.std(y_true)),
        "sample_rows": int(y_true.shape[0]),
    }
    if probability:
        prior = min(max(mean, 1e-7), 1 - 1e-7)
        logit = float(np.log(prior / (1 - prior)))
        evidence["prior_logit"] = logit
        fix = "output kernel = 0, output bias = logit of the label prior"
        example = (
            "output = model.layers[-1]; output.kernel.assign(keras.ops.zeros(output.kernel.shape)); "
            f"output.bias.assign([{logit:.4g}])  # log(p / (1 - p)), p = mean(y): every row "
            "starts at the prior"
        )
    else:
        fix = "keras.layers.Rescaling"
        example = (
            f"model.add(keras.layers.Rescaling(scale={float(np.std(y_true)):.4g}, "
            f"offset={mean:.4g}))  # std(y), mean(y): the output starts at the target mean"
        )
    return [
        Finding(
            code="output-far-from-targets",
            severity="warning",
            title=(
                f"at its initial weights the model's loss is {evidence['ratio']:.3g}x the loss of "
                "always predicting the "
                + ("label prior" if probability else "target mean")
                + f" ({initial:.4g} vs {trivial:.4g})"
            ),
            evidence=evidence,
            fix=fix,
            example=example,
            why="a model that starts at the trivial predictor spends its steps on the signal, "
            "not on moving its output to the targets' mean and scale; unscaled targets also "
            "make every gradient, and the learning rate that suits it, depend on their units",
        )
    ]

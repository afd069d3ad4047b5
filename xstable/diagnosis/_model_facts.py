"""What diagnose needs to know about a compiled model: output activation, loss, optimizer."""

import dataclasses
import math

import keras
import numpy as np

__all__ = ["ModelFacts", "model_facts", "activation_name", "OUTPUT_RANGES"]

# What each output activation can produce (closed bounds: float32 saturates to the bound).
OUTPUT_RANGES = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "soft_sign": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "relu": (0.0, math.inf),
    "relu6": (0.0, 6.0),
    "softplus": (0.0, math.inf),
    "exponential": (0.0, math.inf),
    "elu": (-1.0, math.inf),
    "selu": (-1.7580993408473766, math.inf),
    "log_softmax": (-math.inf, 0.0),
    "log_sigmoid": (-math.inf, 0.0),
}
PROBABILITY_ACTIVATIONS = ("sigmoid", "softmax", "hard_sigmoid")
SATURATING_ACTIVATIONS = ("sigmoid", "tanh", "hard_sigmoid", "hard_tanh", "softsign", "soft_sign")

_LOSS_ALIASES = {
    "binary_crossentropy": "binary_crossentropy",
    "bce": "binary_crossentropy",
    "binarycrossentropy": "binary_crossentropy",
    "binary_focal_crossentropy": "binary_crossentropy",
    "binaryfocalcrossentropy": "binary_crossentropy",
    "categorical_crossentropy": "categorical_crossentropy",
    "cce": "categorical_crossentropy",
    "categoricalcrossentropy": "categorical_crossentropy",
    "categorical_focal_crossentropy": "categorical_crossentropy",
    "categoricalfocalcrossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "sparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
    "mse": "regression",
    "mean_squared_error": "regression",
    "meansquarederror": "regression",
    "mae": "regression",
    "mean_absolute_error": "regression",
    "meanabsoluteerror": "regression",
    "huber": "regression",
    "log_cosh": "regression",
    "logcosh": "regression",
    "mape": "regression",
    "mean_absolute_percentage_error": "regression",
    "meanabsolutepercentageerror": "regression",
    "msle": "regression",
    "mean_squared_logarithmic_error": "regression",
    "meansquaredlogarithmicerror": "regression",
}
_XSTABLE_LOSS_FAMILIES = {
    "safebinarycrossentropy": "binary_crossentropy",
    "safe_binary_crossentropy": "binary_crossentropy",
    "safecategoricalcrossentropy": "categorical_crossentropy",
    "safe_categorical_crossentropy": "categorical_crossentropy",
    "safesparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
    "safe_sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
}


@dataclasses.dataclass
class ModelFacts:
    """Facts about a compiled model that the checks use."""

    model_name: str
    output_activation: str
    output_units: int
    loss_name: str
    loss_family: str  # binary_crossentropy | categorical_crossentropy | ... | custom | other
    loss_from_logits: bool
    loss_is_xstable: bool
    loss_object: object
    ignore_class: object
    optimizer_name: str
    optimizer_wrappers: list
    learning_rate: float
    has_loss_scaling: bool
    compute_dtypes: list


def activation_name(function):
    """The name of a Keras activation function (`"linear"` for None)."""
    if function is None:
        return "linear"
    name = getattr(function, "__name__", None) or type(function).__name__
    return name.lower()


def _walk_layers(layer):
    yield layer
    for child in getattr(layer, "layers", []) or []:
        yield from _walk_layers(child)


def _output_layer_activation(model):
    layer = model
    while getattr(layer, "layers", None):
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.Activation):
        return activation_name(layer.activation)
    if hasattr(layer, "activation"):
        return activation_name(layer.activation)
    return "linear"


def _output_units(model):
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, list):
        return None
    return None if not shape or shape[-1] is None else int(shape[-1])


def _describe_loss(loss):
    """(name, family, from_logits, is_xstable, ignore_class) for the compiled loss."""
    if loss is None:
        return "none", "none", False, False, None
    if isinstance(loss, (dict, list, tuple)):
        return "multiple", "other", False, False, None
    if isinstance(loss, str):
        key = loss.lower()
        return loss, _LOSS_ALIASES.get(key, "other"), False, False, None
    is_loss_object = isinstance(loss, keras.losses.Loss) or hasattr(loss, "get_config")
    module = (type(loss) if is_loss_object else loss).__module__ or ""
    is_xstable = module.startswith("xstable.losses")
    if is_loss_object:
        name = type(loss).__name__
        try:
            config = loss.get_config()
        except (NotImplementedError, TypeError, AttributeError):
            config = {}
        from_logits = bool(config.get("from_logits", False))
        ignore_class = config.get("ignore_class")
        key = name.lower()
        if is_xstable:
            family = _XSTABLE_LOSS_FAMILIES.get(key, "other")
        elif module.startswith("keras"):
            family = _LOSS_ALIASES.get(key, "other")
        else:
            family = "custom"
        return name, family, from_logits, is_xstable, ignore_class
    name = getattr(loss, "__name__", type(loss).__name__)
    if module.startswith("keras"):
        return name, _LOSS_ALIASES.get(name.lower(), "other"), False, False, None
    if is_xstable:
        return name, _XSTABLE_LOSS_FAMILIES.get(name.lower(), "other"), False, True, None
    return name, "custom", False, False, None


def _unwrap_optimizer(optimizer):
    wrappers = []
    while optimizer is not None and getattr(optimizer, "inner_optimizer", None) is not None:
        wrappers.append(type(optimizer).__name__)
        optimizer = optimizer.inner_optimizer
    return optimizer, wrappers


def _learning_rate(optimizer):
    try:
        value = optimizer.learning_rate
        return float(np.asarray(keras.ops.convert_to_numpy(value)))
    except (AttributeError, TypeError, ValueError):
        return None


def model_facts(model):
    """Collects `ModelFacts` from a built, compiled Keras model."""
    loss = getattr(model, "loss", None)
    loss_name, family, from_logits, is_xstable, ignore_class = _describe_loss(loss)
    base, wrappers = _unwrap_optimizer(getattr(model, "optimizer", None))
    compute_dtypes = sorted(
        {
            str(layer.dtype_policy.compute_dtype)
            for layer in _walk_layers(model)
            # Leaf layers only: a container's own policy says nothing about what computes.
            if getattr(layer, "dtype_policy", None) is not None
            and layer.weights
            and not getattr(layer, "layers", None)
        }
    )
    return ModelFacts(
        model_name=model.name,
        output_activation=_output_layer_activation(model),
        output_units=_output_units(model),
        loss_name=loss_name,
        loss_family=family,
        loss_from_logits=from_logits,
        loss_is_xstable=is_xstable,
        loss_object=loss,
        ignore_class=ignore_class,
        optimizer_name=type(base).__name__ if base is not None else "none",
        optimizer_wrappers=wrappers,
        learning_rate=_learning_rate(base) if base is not None else None,
        has_loss_scaling="LossScaleOptimizer" in wrappers,
        compute_dtypes=compute_dtypes,
    )

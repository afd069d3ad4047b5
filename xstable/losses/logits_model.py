"""`to_logits_model`: a copy of a sigmoid/softmax model that outputs logits, and its loss."""

import keras

from xstable.losses.safe_binary_crossentropy import SafeBinaryCrossentropy
from xstable.losses.safe_categorical_crossentropy import SafeCategoricalCrossentropy
from xstable.losses.safe_sparse_categorical_crossentropy import (
    SafeSparseCategoricalCrossentropy,
)

__all__ = ["to_logits_model"]

_LOSS_TWINS = {
    "binary_crossentropy": ("sigmoid", SafeBinaryCrossentropy, ("label_smoothing", "axis")),
    "categorical_crossentropy": (
        "softmax",
        SafeCategoricalCrossentropy,
        ("label_smoothing", "axis"),
    ),
    "sparse_categorical_crossentropy": (
        "softmax",
        SafeSparseCategoricalCrossentropy,
        ("ignore_class", "axis"),
    ),
}
_KERAS_LOSS_NAMES = {
    keras.losses.BinaryCrossentropy: "binary_crossentropy",
    keras.losses.CategoricalCrossentropy: "categorical_crossentropy",
    keras.losses.SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
    SafeBinaryCrossentropy: "binary_crossentropy",
    SafeCategoricalCrossentropy: "categorical_crossentropy",
    SafeSparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
}


def _activation_name(layer):
    """`"sigmoid"`, `"softmax"` or `None`: the probability activation that `layer` ends with."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is keras.activations.sigmoid:
        return "sigmoid"
    if activation is keras.activations.softmax:
        return "softmax"
    return None


def _output_layer(model):
    if len(model.outputs) != 1:
        raise ValueError(
            "`model` must have a single output ending with a sigmoid or softmax. "
            f"Received: model with {len(model.outputs)} outputs"
        )
    (output,) = model.outputs
    for layer in reversed(model.layers):
        if layer.output is output:
            return layer
    raise ValueError(
        "`model` must be a Sequential or functional model whose output layer can be found. "
        f"Received: model={model.name!r}"
    )


def _loss_name(loss):
    if isinstance(loss, str):
        name = loss
    else:
        name = next((n for cls, n in _KERAS_LOSS_NAMES.items() if type(loss) is cls), None)
    if name not in _LOSS_TWINS:
        raise ValueError(
            "`loss` must be None or a binary, categorical or sparse categorical "
            "cross-entropy (a name, or a `keras.losses`/`xstable.losses` instance). "
            f"Received: loss={loss!r}"
        )
    return name


def _from_logits_twin(loss, activation):
    if loss is None:
        twin = SafeBinaryCrossentropy if activation == "sigmoid" else SafeCategoricalCrossentropy
        return twin(from_logits=True)
    name = _loss_name(loss)
    expected_activation, twin, options = _LOSS_TWINS[name]
    if expected_activation != activation:
        raise ValueError(
            f"`loss` {name!r} expects a {expected_activation} output, but the model ends with "
            f"a {activation}. Received: loss={loss!r}"
        )
    if isinstance(loss, str):
        return twin(from_logits=True)
    if getattr(loss, "from_logits", False):
        raise ValueError(
            "`loss` already takes logits (`from_logits=True`), but the model outputs "
            f"probabilities. Received: loss={loss!r}"
        )
    config = loss.get_config()
    kwargs = {key: config[key] for key in options if key in config}
    kwargs["reduction"] = config.get("reduction", "sum_over_batch_size")
    if isinstance(loss, twin):
        kwargs["invalid_targets"] = loss.invalid_targets
        kwargs["name"] = loss.name
    return twin(from_logits=True, **kwargs)


def to_logits_model(model, loss=None):
    """Returns a copy of `model` that outputs logits, and the matching `from_logits` loss.

    A cross-entropy computed from probabilities loses what a saturated sigmoid or softmax
    output threw away: for a logit `z = 100` the probability is exactly 1.0 in float32, so
    the loss can only be capped (Keras clips it to `1 - epsilon`: 16.1 at most) and its
    gradient through the saturated activation is 0: a confidently wrong model never recovers.
    Keras on TensorFlow works around this by reading the logits behind the activation from
    the tensor, which torch and JAX tensors cannot carry. Computed from the logits, the value
    and the gradient `sigmoid(z) - y` (`softmax(z) - y`) are exact for any logit, on every
    backend, eager and compiled.

    The copy has the same layers and weights, except that the output layer's sigmoid or
    softmax is removed (a `Dense(..., activation="sigmoid")` becomes linear; a trailing
    `Activation`/`Softmax` layer becomes `Identity`). `model` itself is not changed. Apply
    `keras.ops.sigmoid` (or `softmax`) to the copy's outputs to get probabilities.

    Args:
        model: A Sequential or functional `keras.Model` with one output, produced by a layer
            whose activation is a sigmoid or a softmax (or a `keras.layers.Softmax`).
        loss: `None`, or the probability-space cross-entropy used so far: a name
            (`"binary_crossentropy"`, ...) or a `keras.losses`/`xstable.losses` binary,
            categorical or sparse categorical cross-entropy. Its options (label smoothing,
            `ignore_class`, `axis`, reduction) carry over. `None` picks the safe binary
            (sigmoid) or categorical (softmax) cross-entropy.

    Returns:
        `(logits_model, logits_loss)`: the uncompiled copy, and the xstable loss with
        `from_logits=True` to compile it with.

    Raises:
        ValueError: if the model has several outputs, its output layer does not end with a
            sigmoid or softmax, or `loss` is not a cross-entropy matching that activation.
        TypeError: if `model` is not a `keras.Model`.

    Example:

    ```python
    logits_model, loss = xstable.losses.to_logits_model(model)
    logits_model.compile(optimizer="adam", loss=loss, metrics=loss.counters)
    logits_model.fit(x, y)
    probabilities = keras.ops.sigmoid(logits_model.predict(x))
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: model={model!r} of type "
            f"{type(model).__name__}"
        )
    output_layer = _output_layer(model)
    activation = _activation_name(output_layer)
    if activation is None:
        raise ValueError(
            "`model` must end with a sigmoid or softmax: its output layer "
            f"{output_layer.name!r} ({type(output_layer).__name__}) has none. A model that "
            "already outputs logits needs only a loss with `from_logits=True`. "
            f"Received: model={model.name!r}"
        )
    logits_loss = _from_logits_twin(loss, activation)

    def without_activation(layer):
        config = layer.get_config()
        if layer is not output_layer:
            return layer.__class__.from_config(config)
        if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
            return keras.layers.Identity(name=layer.name)
        config["activation"] = "linear"
        return layer.__class__.from_config(config)

    logits_model = keras.models.clone_model(model, clone_function=without_activation)
    logits_model.set_weights(model.get_weights())
    return logits_model, logits_loss

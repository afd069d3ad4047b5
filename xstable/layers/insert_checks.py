"""`insert_finite_checks`: a copy of a model with a `FiniteCheck` after every layer."""

import keras

from xstable.layers.finite_check import FiniteCheck

__all__ = ["insert_finite_checks"]


def _is_graph_model(layer):
    """True for Sequential and Functional models (the ones whose layer graph can be rebuilt)."""
    if isinstance(layer, keras.Sequential):
        return True
    return isinstance(layer, keras.Model) and any(
        cls.__name__ == "Functional" for cls in type(layer).__mro__
    )


def insert_finite_checks(model, policy="raise", *, check_inputs=True, **check_kwargs):
    """Returns a model that computes the same as `model` with a `FiniteCheck` after each layer.

    The new model shares every layer (and so every weight) with `model`: training one trains
    the other, and nothing is re-initialised. Nested Sequential and Functional models are
    rebuilt the same way, so a check follows every innermost layer; each check is named
    `"<layer name>_finite_check"`, so a `"raise"` error or a `"count"` log names the layer.

    Args:
        model: A built `keras.Sequential` or Functional `keras.Model`.
        policy: str. `FiniteCheck` policy for every check (`"raise"`, `"warn"`, `"replace"`,
            `"count"`).
        check_inputs: bool. Also check the model inputs. Defaults to `True`.
        **check_kwargs: Further `FiniteCheck` arguments (`nan`, `posinf`, `neginf`).

    Returns:
        A new Functional `keras.Model` with the checks inserted; compile it before `fit`.

    Raises:
        TypeError: If `model` is a subclassed model (its call() cannot be rewritten); put
            `FiniteCheck` layers in its `call()` or use `locate_nonfinite` instead.
        ValueError: If `model` is not built (has no defined inputs), or `policy` is invalid.

    Example:

    >>> checked = insert_finite_checks(model, policy="count")
    >>> checked.compile(optimizer="adam", loss="mse")
    >>> history = checked.fit(x, y, verbose=0)   # logs "<layer>_finite_check_nonfinite"
    """
    if not _is_graph_model(model):
        raise TypeError(
            "`model` must be a keras.Sequential or Functional keras.Model. "
            f"Received: model of type {type(model).__name__}. A subclassed model's call() "
            "cannot be rewritten from outside: add FiniteCheck layers inside its call(), or "
            "use xstable.diagnosis.locate_nonfinite(model, x, y) to find the layer."
        )
    try:
        model_inputs = model.inputs
    except (AttributeError, ValueError):
        model_inputs = None
    if not model_inputs:
        raise ValueError(
            f"`model` must be built with defined inputs. Received: model {model.name!r} "
            "without inputs. Start it with keras.Input(shape) or call it on data once."
        )
    # Validates the policy once, with the error message of FiniteCheck itself.
    FiniteCheck(policy=policy, **check_kwargs)

    def check(tensors, name):
        return FiniteCheck(policy=policy, name=f"{name}_finite_check", **check_kwargs)(tensors)

    def rebuild(inner):
        return insert_finite_checks(inner, policy, check_inputs=False, **check_kwargs)

    if isinstance(model, keras.Sequential):
        inputs = [
            keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"{model.name}_input")
            for t in model_inputs
        ]
        # One input as a tensor, not a list of one: Keras would otherwise warn on every call
        # with a tensor that the structure does not match, and pay for the check.
        inputs = inputs[0] if len(inputs) == 1 else inputs
        hidden = inputs
        if check_inputs:
            hidden = check(hidden, f"{model.name}_input")
        for layer in model.layers:
            if _is_graph_model(layer):
                hidden = rebuild(layer)(hidden)
            else:
                hidden = check(layer(hidden), layer.name)
        return keras.Model(inputs, hidden, name=model.name)

    def clone_layer(layer):
        return rebuild(layer) if _is_graph_model(layer) else layer

    def call_and_check(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if _is_graph_model(layer):
            return outputs
        return check(outputs, layer.name)

    clone = keras.models.clone_model(
        model, clone_function=clone_layer, call_function=call_and_check
    )
    if not check_inputs:
        return clone
    # Inputs are not layer calls, so their checks go in a thin model around the clone.
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype), model.input
    )
    flat = keras.tree.flatten(inputs)
    checked = [check(t, f"{model.name}_input_{i}") for i, t in enumerate(flat)]
    return keras.Model(inputs, clone(keras.tree.pack_sequence_as(inputs, checked)), name=model.name)

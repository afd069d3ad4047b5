"""Initial weights drawn by NumPy, so a scenario starts from the same weights on every backend.

Keras seeds each backend's own random generator, so `keras.utils.set_random_seed(0)` gives
different Glorot draws on TensorFlow, PyTorch and JAX. A scenario that goes NaN on one backend
and not on another would then say nothing about the backends' numerics. These functions draw
every `Dense` kernel from NumPy with the distribution Keras uses by default
(Glorot uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out))) and keep every other weight as the
model built it (zero biases, a bias the scenario assigned, a kernel initialized to zeros, layer
state with a fixed start).
"""

import keras
import numpy as np

__all__ = ["portable_initial_weights", "portable_weights_for_spec"]


def _dense_layers(model):
    # `Model.layers` lists direct children; walk nested models too.
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _dense_layers(layer)
        elif isinstance(layer, keras.layers.Dense):
            yield layer


def portable_initial_weights(model, seed=0):
    """Returns the model's weights with every Dense kernel redrawn by NumPy (Glorot uniform).

    Kernels initialized to zeros (the same on every backend) are kept as built.

    Args:
        model: built `keras.Model`.
        seed: int, seed of the NumPy generator; kernels are drawn in `model.weights` order.

    Returns:
        A list of NumPy arrays in `model.weights` order, for `model.set_weights` or
        `run_spec(..., initial_weights=...)`.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If a Dense kernel uses another initializer than Glorot uniform or zeros (its
            distribution cannot be reproduced here; give the layer Keras's default or extend
            this function).

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> [w.shape for w in portable_initial_weights(model)]
    [(3, 2), (2,)]
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a built `keras.Model`. Received: model of type "
            f"{type(model).__name__}."
        )
    kernels = {}
    for layer in _dense_layers(model):
        initializer = layer.kernel_initializer
        if type(initializer) is keras.initializers.Zeros:
            continue  # zeros on every backend: kept as built
        if type(initializer) is not keras.initializers.GlorotUniform:
            raise ValueError(
                f"Layer {layer.name!r} initializes its kernel with "
                f"{type(initializer).__name__}; only GlorotUniform (Keras's Dense default) "
                "is reproduced in NumPy, and Zeros kept as built. Received: kernel_initializer="
                f"{type(initializer).__name__}."
            )
        kernels[id(layer.kernel)] = layer.kernel
    rng = np.random.default_rng(seed)
    weights = []
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable.value)
        if id(variable) in kernels:
            fan_in, fan_out = value.shape
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, size=value.shape).astype(value.dtype)
        weights.append(np.array(value))
    return weights


def portable_weights_for_spec(spec):
    """Builds `spec`'s model (seeded as `run_spec` does) and returns its portable initial weights.

    Args:
        spec: `xstable.training.TrainingSpec`.

    Returns:
        A list of NumPy arrays (see `portable_initial_weights`), seeded with `spec.seed`.
    """
    return portable_initial_weights(spec.seeded_model(), seed=spec.seed)

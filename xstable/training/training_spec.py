"""`TrainingSpec`: everything needed to train one model identically on any backend."""

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["TrainingSpec"]


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """A backend-neutral recipe for one training run.

    Every callable is called afresh in each run, so optimizers, losses and models are never
    shared between runs (a Keras optimizer holds state).

    Args:
        name: Short identifier, used in reports and file names.
        build_model: `() -> keras.Model`, an uncompiled model whose input shape is known
            (start with `keras.Input`), so that its weights exist before training.
        make_data: `() -> (x, y)`, deterministic NumPy arrays (same on every call).
        make_compile_args: `() -> dict` of keyword arguments for `model.compile`
            (`optimizer`, `loss`, `metrics`...). `jit_compile` is set by the spec, not here.
        epochs: Number of passes over the data.
        batch_size: Rows per step. The last batch of an epoch may be smaller.
        shuffle: Whether each epoch visits the rows in a new order. The order comes from
            `batch_order(..., seed)`, identical on every backend.
        seed: Seed for `keras.utils.set_random_seed` (weight initialisation) and the batch order.
        jit_compile: Passed to `model.compile`. `"auto"` is Keras's default: XLA on JAX,
            eager on torch, graph mode on TF CPU.
        description: One line saying what the run is for.
    """

    name: str
    build_model: Callable[[], Any]
    make_data: Callable[[], tuple]
    make_compile_args: Callable[[], dict]
    epochs: int = 1
    batch_size: int = 32
    shuffle: bool = True
    seed: int = 0
    jit_compile: Any = "auto"
    description: str = ""

    def __post_init__(self):
        for field in ("build_model", "make_data", "make_compile_args"):
            value = getattr(self, field)
            if not callable(value):
                raise TypeError(
                    f"`{field}` must be a callable that takes no arguments. "
                    f"Received: {field}={value!r} of type {type(value).__name__}."
                )
        for field in ("epochs", "batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"`{field}` must be a positive integer. Received: {field}={value!r}."
                )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string. Received: name={self.name!r}.")

    def seeded_model(self):
        """Returns a fresh model from `build_model`, built after seeding Keras with `seed`.

        Raises:
            TypeError: If `build_model` returns no `keras.Model`.
        """
        # Imported here: the spec itself stays backend-free (compare's parent process uses it).
        import keras

        keras.utils.set_random_seed(self.seed)
        model = self.build_model()
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"`build_model` of spec {self.name!r} must return a `keras.Model`. "
                f"Received: {type(model).__name__}."
            )
        return model

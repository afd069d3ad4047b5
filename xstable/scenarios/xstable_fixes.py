"""The xstable fixes: a scenario's spec with xstable components put in, inside the model.

The documents fix their failures outside the model (scikit-learn scalers, pandas filters,
another learning rate). These functions take a `TrainingSpec` and return one that solves the
same problem with xstable components, so the fix travels with the model: `AutoScale` as the
first layer instead of a scaler, `GuardedOptimizer` around the optimizer instead of a smaller
learning rate, `SafeBinaryCrossentropy` instead of a hand-written cross-entropy.
"""

import dataclasses

import keras

from xstable.layers import AutoScale
from xstable.losses import SafeBinaryCrossentropy
from xstable.optimizers import GuardedOptimizer
from xstable.training import TrainingSpec

__all__ = ["with_auto_scale", "with_guarded_optimizer", "with_safe_binary_crossentropy"]


def _check_spec(spec):
    if not isinstance(spec, TrainingSpec):
        raise TypeError(
            f"`spec` must be an `xstable.training.TrainingSpec`. Received: spec of type "
            f"{type(spec).__name__}."
        )


def with_auto_scale(spec, name, **auto_scale_kwargs):
    """Returns `spec` with an `AutoScale` layer, adapted on the spec's inputs, first in the model.

    Args:
        spec: `TrainingSpec` whose model is a `keras.Sequential`.
        name: str, name of the new spec.
        **auto_scale_kwargs: arguments of `xstable.layers.AutoScale` (e.g. `method="robust"`).

    Returns:
        A new `TrainingSpec`.

    Raises:
        TypeError: If `spec` is not a `TrainingSpec`, or its model is not a `keras.Sequential`
            (checked when the model is built).
    """
    _check_spec(spec)

    def build_model():
        model = spec.build_model()
        if not isinstance(model, keras.Sequential):
            raise TypeError(
                f"`with_auto_scale` needs a keras.Sequential model. Received: "
                f"{type(model).__name__} from spec {spec.name!r}."
            )
        x, _ = spec.make_data()
        scale = AutoScale(**auto_scale_kwargs)
        scale.adapt(x)
        return keras.Sequential([keras.Input(model.input_shape[1:]), scale, *model.layers])

    return dataclasses.replace(spec, name=name, build_model=build_model)


def with_guarded_optimizer(spec, name, **guard_kwargs):
    """Returns `spec` with its optimizer wrapped in `GuardedOptimizer(optimizer, **guard_kwargs)`.

    Args:
        spec: `TrainingSpec`.
        name: str, name of the new spec.
        **guard_kwargs: arguments of `xstable.optimizers.GuardedOptimizer`
            (e.g. `global_clipnorm=1.0`).

    Returns:
        A new `TrainingSpec`.

    Raises:
        TypeError: If `spec` is not a `TrainingSpec`.
    """
    _check_spec(spec)
    make_compile_args = spec.make_compile_args

    def guarded_compile_args():
        args = make_compile_args()
        return {**args, "optimizer": GuardedOptimizer(args["optimizer"], **guard_kwargs)}

    return dataclasses.replace(spec, name=name, make_compile_args=guarded_compile_args)


def with_safe_binary_crossentropy(spec, name):
    """Returns `spec` with its loss replaced by `xstable.losses.SafeBinaryCrossentropy()`.

    Args:
        spec: `TrainingSpec` whose loss is a binary cross-entropy of probabilities.
        name: str, name of the new spec.

    Returns:
        A new `TrainingSpec`.

    Raises:
        TypeError: If `spec` is not a `TrainingSpec`.
    """
    _check_spec(spec)
    make_compile_args = spec.make_compile_args

    def safe_compile_args():
        return {**make_compile_args(), "loss": SafeBinaryCrossentropy()}

    return dataclasses.replace(spec, name=name, make_compile_args=safe_compile_args)

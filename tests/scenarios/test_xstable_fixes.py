import keras
import numpy as np
import pytest

from xstable.layers import AutoScale
from xstable.losses import SafeBinaryCrossentropy
from xstable.optimizers import GuardedOptimizer
from xstable.scenarios import xstable_fixes as fixes
from xstable.training import TrainingSpec


def _spec():
    return TrainingSpec(
        "base",
        lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
        lambda: (np.array([[1.0, 1e6], [2.0, 2e6], [3.0, 3e6]], "float32"), np.zeros(3, "float32")),
        lambda: {"optimizer": "sgd", "loss": "binary_crossentropy"},
    )


def test_auto_scale_goes_first_and_is_adapted_on_the_spec_inputs():
    spec = fixes.with_auto_scale(_spec(), "scaled", method="standard")
    model = spec.build_model()
    assert spec.name == "scaled" and isinstance(model.layers[0], AutoScale)
    out = keras.ops.convert_to_numpy(model.layers[0](spec.make_data()[0]))
    # Standardized columns: mean 0, std 1 (population std, as StandardScaler).
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-4)


def test_guarded_optimizer_wraps_the_specs_optimizer():
    args = fixes.with_guarded_optimizer(_spec(), "guarded", clipnorm=1.0).make_compile_args()
    assert isinstance(args["optimizer"], GuardedOptimizer) and args["loss"] == "binary_crossentropy"


def test_safe_binary_crossentropy_replaces_the_loss():
    args = fixes.with_safe_binary_crossentropy(_spec(), "safe").make_compile_args()
    assert isinstance(args["loss"], SafeBinaryCrossentropy) and args["optimizer"] == "sgd"


def test_non_specs_are_refused():
    for make in (fixes.with_auto_scale, fixes.with_guarded_optimizer):
        with pytest.raises(TypeError, match="`spec` must be"):
            make("spec", "name")
    with pytest.raises(TypeError, match="`spec` must be"):
        fixes.with_safe_binary_crossentropy(None, "name")

import keras
import numpy as np
import pytest

from xstable.layers import AutoScale
from xstable.optimizers import GuardedOptimizer
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios.initial_weights import portable_weights_for_spec
from xstable.training import TrainingSpec


def _data():
    x = np.array([[1.0, 1e6], [2.0, 2e6], [3.0, 3e6], [4.0, 4e6]], "float32")
    return x, np.array([[0.0], [1.0], [1.0], [1.0]], "float32")


def _spec(activation=None):
    return TrainingSpec(
        "base",
        lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation=activation)]),
        _data,
        lambda: {"optimizer": keras.optimizers.SGD(10.0), "loss": "mse"},
    )


def test_regression_fix_scales_inputs_starts_at_the_mean_and_guards_the_optimizer():
    fix = fixes.XstableFix(
        ("feature-scale-spread",),
        auto_scale={"method": "standard"},
        start_at_trivial=True,
        learning_rate=0.1,
        guard=fixes.GUARD,
    )
    spec = fixes.apply_fix(_spec(), "fixed", fix)
    model = spec.build_model()
    x, y = _data()
    assert spec.name == "fixed" and isinstance(model.layers[0], AutoScale)
    scaled = keras.ops.convert_to_numpy(model.layers[0](x))
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, rtol=1e-4)
    rescaling = model.layers[-1]
    assert isinstance(rescaling, keras.layers.Rescaling)
    np.testing.assert_allclose([rescaling.scale, rescaling.offset], [y.std(), y.mean()], rtol=1e-6)
    optimizer = spec.make_compile_args()["optimizer"]
    assert isinstance(optimizer, GuardedOptimizer)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.SGD)
    assert float(keras.ops.convert_to_numpy(optimizer.inner_optimizer.learning_rate)) == (
        pytest.approx(0.1)
    )
    assert len(fix.describe()) == 4


def test_classification_fix_trains_logits_from_the_prior():
    fix = fixes.XstableFix(("custom-loss",), logits=True, start_at_trivial=True)
    spec = fixes.apply_fix(_spec("sigmoid"), "logits", fix)
    model = spec.build_model()
    output = model.layers[-1]
    assert output.activation is keras.activations.linear
    np.testing.assert_allclose(keras.ops.convert_to_numpy(output.bias), [np.log(0.75 / 0.25)])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(output.kernel), np.zeros((2, 1)))
    # The portable weights the scenarios start from keep that start: every row at the prior.
    model.set_weights(portable_weights_for_spec(spec))
    x, y = _data()
    logits = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(logits, np.full((4, 1), np.log(0.75 / 0.25)), rtol=1e-6)
    args = spec.make_compile_args()
    assert isinstance(args["loss"], keras.losses.BinaryCrossentropy)
    assert args["loss"].get_config()["from_logits"]
    assert isinstance(args["optimizer"], keras.optimizers.SGD)  # no guard asked for


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="`answers` must be a non-empty tuple"):
        fixes.XstableFix(())
    with pytest.raises(TypeError, match="`spec` must be"):
        fixes.apply_fix("spec", "name", fixes.XstableFix(("a",)))
    with pytest.raises(TypeError, match="`fix` must be an `XstableFix`"):
        fixes.apply_fix(_spec(), "name", {"auto_scale": {}})


def test_starting_at_the_prior_needs_a_dense_output():
    def build():
        return keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(1), keras.layers.Activation("sigmoid")]
        )

    spec = TrainingSpec(
        "base", build, _data, lambda: {"optimizer": "sgd", "loss": "binary_crossentropy"}
    )
    fixed = fixes.apply_fix(
        spec, "prior", fixes.XstableFix(("a",), start_at_trivial=True, logits=True)
    )
    with pytest.raises(TypeError, match="needs a `Dense` output layer"):
        fixed.build_model()

"""The model zoo (examples/zoo) on the active backend: every spec loads, builds, trains a step."""

import keras
import numpy as np
import pytest

from xstable.compare.targets import load_spec

pytest.importorskip("sklearn", reason="the digits CNN reads scikit-learn's bundled digits")

from examples.zoo import specs as zoo  # noqa: E402


@pytest.mark.parametrize("target", zoo.TARGETS)
def test_zoo_spec_builds_and_trains_one_step(target):
    spec = load_spec(target)
    keras.utils.set_random_seed(spec.seed)
    model = spec.build_model()
    model.compile(**spec.make_compile_args())
    x, y = spec.make_data()
    loss = model.train_on_batch(x[: spec.batch_size], y[: spec.batch_size])
    assert np.isfinite(loss)


def test_mixed_precision_zoo_model_leaves_the_global_policy_alone():
    before = keras.config.dtype_policy().name
    model = load_spec(f"{zoo._FILE}:mixed_precision_mlp").build_model()
    assert model.dtype_policy.name == "mixed_float16"
    assert keras.config.dtype_policy().name == before
    model.compile(optimizer="adam", loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

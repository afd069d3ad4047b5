"""The foundation: every public module imports, xstable reports its backend, Keras trains."""

import importlib
import os
import pkgutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import xstable
from tests.helpers import assert_matches_reference


def _public_modules():
    names = ["xstable"]
    for info in pkgutil.walk_packages(xstable.__path__, prefix="xstable."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _public_modules())
def test_public_module_imports_and_declares_all(module_name):
    module = importlib.import_module(module_name)
    assert hasattr(module, "__all__"), f"{module_name} must declare its public API in __all__"
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ lists {name!r}, which is missing"


def test_reports_the_backend_keras_runs_on():
    expected = os.environ.get("KERAS_BACKEND", keras.config.backend())
    assert xstable.active_backend() == expected == keras.config.backend()
    versions = xstable.library_versions()
    assert versions["backend"] == expected
    assert versions["backend_version"], f"no installed version found for backend {expected}"
    assert versions["keras"] == keras.__version__
    assert xstable.active_device().split(":")[0] in {"cpu", "gpu", "cuda", "tpu", "rocm"}


def test_backend_library_is_really_importable():
    # A broken backend install must fail here rather than fall back silently.
    module = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}[keras.config.backend()]
    importlib.import_module(module)
    out = keras.ops.add(keras.ops.ones((2,)), 1.0)
    assert_matches_reference(out, np.full((2,), 2.0), "exact", what="ones + 1")


def test_tiny_model_trains_a_few_steps():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.1 * losses[0], f"loss did not fall: {losses}"


def test_reference_helper_reports_the_deviation():
    with pytest.raises(AssertionError, match=r"max rel deviation 1\.000e-01.*index \(1,\)"):
        assert_matches_reference(np.array([1.0, 1.1]), np.array([1.0, 1.0]), "float32")
    assert_matches_reference(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]), "exact")


def test_command_line_info_names_the_backend():
    result = subprocess.run(
        [sys.executable, "-m", "xstable", "info"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KERAS_BACKEND": keras.config.backend()},
    )
    assert f'"backend": "{keras.config.backend()}"' in result.stdout


def test_errors_are_floating_point_errors():
    assert issubclass(xstable.NonFiniteError, FloatingPointError)

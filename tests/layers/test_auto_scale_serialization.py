"""A model with AutoScale saved on this backend loads here and on the other installed backends
with the same outputs (relative deviation <= 1e-6)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers import assert_matches_reference
from xstable.layers import AutoScale

ROOT = Path(__file__).resolve().parents[2]
BACKEND_MODULES = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}

LOAD_AND_PREDICT = """
import sys
import numpy as np
import keras
from xstable.layers import AutoScale  # importing registers the class for loading
model = keras.models.load_model(sys.argv[1])
scale = next(layer for layer in model.layers if isinstance(layer, AutoScale))
np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]), verbose=0), np.float64))
print(scale.feature_methods)
"""


def _data():
    rng = np.random.default_rng(11)
    x = np.stack(
        [rng.standard_cauchy(200), rng.normal(1e6, 10.0, 200), rng.random(200), np.ones(200)], 1
    )
    x[3] = np.nan
    x[4, 0] = 1e10
    return x


def test_saved_model_loads_on_every_installed_backend(tmp_path):
    x = _data()
    scale = AutoScale()
    scale.adapt(x)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3)(scale(inputs))
    model = keras.Model(inputs, outputs)
    probe = np.concatenate([x[:20], [[np.inf, -np.inf, np.nan, 3e38]]]).astype("float32")
    expected = np.asarray(model.predict(probe, verbose=0), np.float64)
    path = tmp_path / "auto_scale.keras"
    model.save(path)
    np.save(tmp_path / "probe.npy", probe)

    same_backend = keras.models.load_model(path)
    assert same_backend.layers[1].feature_methods == scale.feature_methods
    assert_matches_reference(same_backend.predict(probe, verbose=0), expected, "exact")

    others = [
        b
        for b, module in BACKEND_MODULES.items()
        if b != keras.config.backend() and importlib.util.find_spec(module) is not None
    ]
    if not others:
        pytest.skip("no other Keras backend is installed in this environment")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    for backend in others:
        out = tmp_path / f"out_{backend}.npy"
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                LOAD_AND_PREDICT,
                str(path),
                str(tmp_path / "probe.npy"),
                str(out),
            ],
            env={**env, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert str(scale.feature_methods) in result.stdout
        assert_matches_reference(
            np.load(out),
            expected,
            (1e-6, 1e-6),
            what=f"saved on {keras.config.backend()}, loaded on {backend}",
        )

"""`import xstable` is enough to load a saved model that uses xstable's classes."""

import os
import subprocess
import sys
import textwrap

import keras

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SAVE = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    import xstable

    keras.utils.set_random_seed(0)
    x = np.random.RandomState(0).randn(32, 3).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    normalize = xstable.layers.AutoScale()
    normalize.adapt(x)
    model = keras.Sequential(
        [keras.Input((3,)), normalize, xstable.layers.FiniteCheck(policy="count"),
         keras.layers.Dense(1, activation="sigmoid")]
    )
    loss = xstable.losses.SafeBinaryCrossentropy(label_smoothing=0.1)
    model.compile(
        optimizer=xstable.optimizers.GuardedOptimizer(keras.optimizers.Adam(1e-2), clipnorm=1.0),
        loss=loss,
    )
    model.fit(x, y, epochs=2, verbose=0)
    model.save(sys.argv[1])
    np.save(sys.argv[2], model.predict(x, verbose=0))
    np.save(sys.argv[3], x)
    """
)

# Only `keras` and `xstable` are imported: no xstable submodule by name.
_LOAD = textwrap.dedent(
    """
    import sys
    {imports}
    import numpy as np

    model = keras.saving.load_model(sys.argv[1])
    x = np.load(sys.argv[3])
    np.testing.assert_allclose(model.predict(x, verbose=0), np.load(sys.argv[2]), rtol=1e-5)
    print(type(model.loss).__name__, type(model.optimizer).__name__,
          [type(layer).__name__ for layer in model.layers])
    """
)


def _run(code, *args):
    env = dict(os.environ, PYTHONPATH=_ROOT, KERAS_BACKEND=keras.config.backend())
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _saved(tmp_path):
    paths = [str(tmp_path / "m.keras"), str(tmp_path / "p.npy"), str(tmp_path / "x.npy")]
    _run(_SAVE, *paths)
    return paths


def test_keras_then_xstable_loads_a_saved_model_in_a_fresh_process(tmp_path):
    paths = _saved(tmp_path)
    out = _run(_LOAD.format(imports="import keras, xstable"), *paths)
    assert "SafeBinaryCrossentropy GuardedOptimizer" in out, out
    assert "AutoScale" in out and "FiniteCheck" in out, out
    # xstable before keras: registered when keras finishes importing.
    out = _run(_LOAD.format(imports="import xstable\nimport keras"), *paths)
    assert "SafeBinaryCrossentropy GuardedOptimizer" in out, out


def test_import_xstable_alone_does_not_import_keras():
    code = (
        "import sys, xstable, xstable.__main__ as m\n"
        "m.build_parser()\n"
        "print('keras' in sys.modules)"
    )
    assert _run(code).strip() == "False"


def test_registered_whichever_xstable_module_imports_keras_first():
    # `xstable.runtime` imports Keras itself; registering in the middle of its import would
    # import the optimizers, which need it finished.
    for first in ("xstable.runtime", "xstable.numerics", "xstable.diagnosis"):
        code = (
            f"import {first}, keras\n"
            "names = ['xstable>AutoScale', 'xstable>FiniteCheck', 'xstable>SafeLoss',\n"
            "         'xstable>GuardedOptimizer', 'xstable>LossEventCount']\n"
            "print(all(keras.saving.get_registered_object(n) is not None for n in names))"
        )
        assert _run(code).strip().splitlines()[-1] == "True", first

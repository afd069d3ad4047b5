"""Small specs for the compare tests, loaded by the workers as `tests.compare.specs:<name>`.

`saturated_bce` and `batchnorm_large_mean` plant real backend differences (BACKEND-NOTES 2 and
5) at a known step; `benign_mlp` must not be flagged; `faulty` crashes on torch and hangs on
JAX. `tiny` trains 2 steps; `crashes_building_on_torch` kills torch's worker while it builds
the model; `hangs` writes its process id to `$XSTABLE_TEST_HANG_MARKER` and sleeps. The rest
are malformed on purpose.
"""

import os
import signal
import time

import keras
import numpy as np

from xstable.training import TrainingSpec

__all__ = [
    "SATURATION_STEP",
    "BATCHNORM_STEP",
    "benign_mlp",
    "saturated_bce",
    "batchnorm_large_mean",
    "faulty",
    "tiny",
    "crashes_building_on_torch",
    "hangs",
    "returns_number",
    "dict_missing_data",
    "dict_spec",
    "SPEC_OBJECT",
]

SATURATION_STEP = 5
BATCHNORM_STEP = 3


def benign_mlp():
    """A healthy regression MLP with Adam: backends agree to float32 rounding."""

    def build_model():
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))

    def make_data():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(128, 4)).astype("float32")
        y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3]).astype("float32")
        return x, y

    return TrainingSpec(
        "benign_mlp",
        build_model,
        make_data,
        lambda: {"optimizer": keras.optimizers.Adam(1e-2), "loss": "mse"},
        epochs=3,
        batch_size=16,
        description="healthy MLP regression; must not be flagged",
    )


def saturated_bce():
    """Cross-entropy on saturated sigmoid probabilities from step `SATURATION_STEP` on.

    TensorFlow recovers the logits and computes the exact loss; torch and JAX clip the
    probabilities to [1e-7, 1 - 1e-7] (BACKEND-NOTES 2), so the loss differs by a large factor.
    """

    def build_model():
        inputs = keras.Input((1,))
        outputs = keras.layers.Dense(
            1, activation="sigmoid", kernel_initializer="ones", name="probability"
        )(inputs)
        return keras.Model(inputs, outputs)

    def make_data():
        rng = np.random.default_rng(1)
        x = rng.uniform(-1, 1, size=(64, 1)).astype("float32")
        y = (x > 0).astype("float32")
        rows = slice(8 * SATURATION_STEP, 8 * SATURATION_STEP + 8)
        x[rows] = np.where(np.arange(8)[:, None] % 2 == 0, 100.0, -100.0)
        y[rows] = (x[rows] < 0).astype("float32")  # Confidently wrong: saturated and large.
        return x, y

    return TrainingSpec(
        "saturated_bce",
        build_model,
        make_data,
        lambda: {"optimizer": keras.optimizers.SGD(1e-3), "loss": "binary_crossentropy"},
        epochs=1,
        batch_size=8,
        shuffle=False,
        description="planted: BCE on saturated sigmoid probabilities (BACKEND-NOTES 2)",
    )


def batchnorm_large_mean():
    """Batch statistics of a large-mean, small-spread batch at step `BATCHNORM_STEP`.

    torch's one-pass variance E[x^2] - E[x]^2 cancels catastrophically in float32 and the
    batch normalization output becomes garbage or NaN; TensorFlow and JAX stay finite
    (BACKEND-NOTES 5).
    """

    def build_model():
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, name="hidden")(inputs)
        normalized = keras.layers.BatchNormalization(name="batchnorm")(hidden)
        return keras.Model(inputs, keras.layers.Dense(1, name="head")(normalized))

    def make_data():
        rng = np.random.default_rng(2)
        x = rng.normal(size=(48, 4)).astype("float32")
        rows = slice(8 * BATCHNORM_STEP, 8 * BATCHNORM_STEP + 8)
        x[rows] = 1e4 + 0.1 * rng.normal(size=(8, 4))
        y = rng.normal(size=(48, 1)).astype("float32")
        return x, y

    return TrainingSpec(
        "batchnorm_large_mean",
        build_model,
        make_data,
        lambda: {"optimizer": keras.optimizers.SGD(1e-2), "loss": "mse"},
        epochs=1,
        batch_size=8,
        shuffle=False,
        description="planted: batch variance of a large-mean batch (BACKEND-NOTES 5)",
    )


def faulty():
    """Trains normally on TensorFlow, kills its own process on torch, hangs on JAX."""

    def make_data():
        backend = keras.config.backend()
        if backend == "torch":
            os.kill(os.getpid(), signal.SIGKILL)
        if backend == "jax":
            time.sleep(3600)
        x = np.ones((8, 2), "float32")
        return x, x[:, :1]

    return TrainingSpec(
        "faulty",
        lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
        make_data,
        lambda: {"optimizer": "sgd", "loss": "mse"},
        batch_size=4,
    )


def _tiny_model():
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(inputs))


def _tiny_data():
    x = np.linspace(-1, 1, 16, dtype="float32").reshape(8, 2)
    return x, x[:, :1] * 0.5


def tiny():
    """Two SGD steps of a one-layer regression: the quickest healthy target."""
    return TrainingSpec(
        "tiny", _tiny_model, _tiny_data, lambda: {"optimizer": "sgd", "loss": "mse"},
        batch_size=4, shuffle=False,
    )


def crashes_building_on_torch():
    """Kills its own process while torch builds the model; trains normally elsewhere."""

    def build_model():
        if keras.config.backend() == "torch":
            os.kill(os.getpid(), signal.SIGKILL)
        return _tiny_model()

    return TrainingSpec(
        "crashes_building_on_torch", build_model, _tiny_data,
        lambda: {"optimizer": "sgd", "loss": "mse"}, batch_size=4, shuffle=False,
    )


def hangs():
    """Builds its model, then hangs in `make_data` after writing its pid to a marker file."""

    def make_data():
        marker = os.environ.get("XSTABLE_TEST_HANG_MARKER")
        if marker:
            with open(marker + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
        time.sleep(3600)

    return TrainingSpec(
        "hangs", _tiny_model, make_data, lambda: {"optimizer": "sgd", "loss": "mse"},
        batch_size=4,
    )


def returns_number():
    return 42


def dict_missing_data():
    return {"name": "broken", "build_model": lambda: None, "make_compile_args": dict}


def dict_spec():
    spec = benign_mlp()
    return {
        "name": "from_dict",
        "build_model": spec.build_model,
        "make_data": spec.make_data,
        "make_compile_args": spec.make_compile_args,
        "epochs": 1,
        "batch_size": 32,
    }


SPEC_OBJECT = benign_mlp()

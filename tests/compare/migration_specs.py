"""Specs and saved-model helpers for the migration tests: dropout, saved models, planted layers.

Imported by each backend's compare worker (`tests.compare.migration_specs:<function>`, and
`--import tests.compare.migration_specs` to register the custom layer of a saved model).
"""

import keras
import numpy as np

DROPOUT_RATE = 0.2
SKEWED_RATES = {"torch": 0.6}  # the planted difference: torch drops far more


def _regression_data(rows=256, features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    w = rng.normal(size=(features, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(rows, 1))).astype("float32")
    return x, y


def _dropout_spec(name, rate_for_backend):
    def build_model():
        rate = rate_for_backend(keras.config.backend())
        return keras.Sequential([
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(rate),
            keras.layers.Dense(1),
        ])

    return {
        "name": name,
        "build_model": build_model,
        "make_data": _regression_data,
        "make_compile_args": lambda: {"optimizer": keras.optimizers.Adam(1e-2), "loss": "mse"},
        "epochs": 3,
        "batch_size": 32,
        "shuffle": False,
    }


def dropout_mlp():
    """A dropout MLP that should train alike on every backend (statistically)."""
    return _dropout_spec("dropout_mlp", lambda backend: DROPOUT_RATE)


def dropout_rate_differs():
    """The same MLP whose dropout rate differs on torch: a real difference to detect."""
    return _dropout_spec("dropout_rate_differs",
                         lambda backend: SKEWED_RATES.get(backend, DROPOUT_RATE))


@keras.saving.register_keras_serializable(package="xstable_tests")
class BackendSkew(keras.layers.Layer):
    """Multiplies by `factor` on `skewed_backend` only: a layer that computes differently there."""

    def __init__(self, factor=1.01, skewed_backend="torch", **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.skewed_backend = skewed_backend

    def call(self, inputs):
        if keras.config.backend() == self.skewed_backend:
            return inputs * self.factor
        return inputs

    def get_config(self):
        return {**super().get_config(), "factor": self.factor,
                "skewed_backend": self.skewed_backend}


@keras.saving.register_keras_serializable(package="xstable_tests")
class SubclassedRegressor(keras.Model):
    """A subclassed model Keras can save (its config rebuilds it)."""

    def __init__(self, units=16, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, activation="tanh")
        self.out = keras.layers.Dense(1)

    def call(self, inputs):
        return self.out(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def save_regression_data(path, with_y=True):
    x, y = _regression_data(rows=64)
    if with_y:
        np.savez(path, x=x, y=y)
    else:
        np.savez(path, x=x)
    return x, y


def functional_model(skew=False):
    """A small functional model; with `skew`, a `BackendSkew` layer after the hidden layer."""
    inputs = keras.Input((8,), name="features")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    if skew:
        hidden = BackendSkew(name="skew")(hidden)
    outputs = keras.layers.Dense(1, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    return model


def sequential_model():
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def subclassed_model():
    model = SubclassedRegressor()
    model(np.zeros((1, 8), "float32"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def mixed_overflow():
    """Finite in float32; under mixed_float16 the `amplify` layer's output exceeds float16's
    largest value (65504) from the first step."""

    def build_model():
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
        loud = keras.layers.Dense(
            16, kernel_initializer=keras.initializers.Constant(400.0), name="amplify"
        )(hidden)
        outputs = keras.layers.Dense(1, name="head")(keras.layers.LayerNormalization(
            name="norm")(loud))
        return keras.Model(inputs, outputs)

    def make_data():
        x, y = _regression_data(rows=64)
        return 10.0 * x, y

    return {
        "name": "mixed_overflow",
        "build_model": build_model,
        "make_data": make_data,
        "make_compile_args": lambda: {"optimizer": keras.optimizers.Adam(1e-3), "loss": "mse"},
        "epochs": 1,
        "batch_size": 16,
        "shuffle": False,
    }

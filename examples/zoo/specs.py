"""A small model zoo for `xstable compare`: common layer families, a few steps each.

Run on all three backends (what `nox -s compare` does after the seed scenarios):

    xstable compare examples/zoo/specs.py:digits_cnn examples/zoo/specs.py:lstm_sequence \\
        examples/zoo/specs.py:gru_sequence examples/zoo/specs.py:attention_classifier \\
        examples/zoo/specs.py:dropout_mlp examples/zoo/specs.py:mixed_precision_mlp \\
        --out reports/compare-zoo

`TARGETS` lists them. Every model is small and trains for a few steps, so the whole zoo runs
on three backends in about two minutes on a 2-core machine. What compare finds on each is in
docs/compare.md ("The model zoo").
"""

import os

import keras
import numpy as np

_FILE = os.path.relpath(os.path.abspath(__file__))
ZOO = ("digits_cnn", "lstm_sequence", "gru_sequence", "attention_classifier", "dropout_mlp",
       "mixed_precision_mlp")
TARGETS = [f"{_FILE}:{name}" for name in ZOO]


def _adam(learning_rate=1e-3):
    return keras.optimizers.Adam(learning_rate)


def digits_cnn():
    """Conv2D + BatchNormalization on scikit-learn's bundled 8x8 digits (no download)."""

    def build_model():
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
        x = keras.layers.BatchNormalization(name="batchnorm")(x)
        x = keras.layers.ReLU(name="relu")(x)
        x = keras.layers.MaxPooling2D(name="pool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        outputs = keras.layers.Dense(10, activation="softmax", name="classes")(x)
        return keras.Model(inputs, outputs)

    def make_data():
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images[:256] / 16.0).astype("float32")[..., None]
        return x, digits.target[:256].astype("int32")

    return {
        "name": "digits_cnn",
        "build_model": build_model,
        "make_data": make_data,
        "make_compile_args": lambda: {"optimizer": _adam(1e-2),
                                      "loss": "sparse_categorical_crossentropy"},
        "epochs": 1,
        "batch_size": 32,
        "description": "Conv2D + BatchNormalization + softmax on sklearn digits (256 images)",
    }


def _sequence_data(rows=128, steps=12, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, steps, features)).astype("float32")
    y = x[:, :, 0].cumsum(axis=1)[:, -1:].astype("float32") / np.sqrt(steps)
    return x, y


def _recurrent(name, layer):
    def build_model():
        inputs = keras.Input((12, 4))
        x = layer(16, name=name)(inputs)
        outputs = keras.layers.Dense(1, name="head")(x)
        return keras.Model(inputs, outputs)

    return {
        "name": f"{name}_sequence",
        "build_model": build_model,
        "make_data": _sequence_data,
        "make_compile_args": lambda: {"optimizer": _adam(1e-2), "loss": "mse"},
        "epochs": 2,
        "batch_size": 32,
        "description": f"{layer.__name__}(16) regression on a running sum of 12 steps",
    }


def lstm_sequence():
    """An LSTM regressing the running sum of a sequence."""
    return _recurrent("lstm", keras.layers.LSTM)


def gru_sequence():
    """A GRU regressing the running sum of a sequence."""
    return _recurrent("gru", keras.layers.GRU)


def attention_classifier():
    """Embedding + MultiHeadAttention + LayerNormalization, token classification, Adam."""

    def build_model():
        tokens = keras.Input((10,), dtype="int32")
        x = keras.layers.Embedding(50, 16, name="embedding")(tokens)
        attended = keras.layers.MultiHeadAttention(2, 8, name="attention")(x, x)
        x = keras.layers.LayerNormalization(name="layernorm")(x + attended)
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
        outputs = keras.layers.Dense(2, activation="softmax", name="classes")(x)
        return keras.Model(tokens, outputs)

    def make_data():
        rng = np.random.default_rng(0)
        x = rng.integers(0, 50, size=(128, 10)).astype("int32")
        y = (x[:, :5].sum(axis=1) > x[:, 5:].sum(axis=1)).astype("int32")
        return x, y

    return {
        "name": "attention_classifier",
        "build_model": build_model,
        "make_data": make_data,
        "make_compile_args": lambda: {"optimizer": _adam(1e-2),
                                      "loss": "sparse_categorical_crossentropy"},
        "epochs": 2,
        "batch_size": 32,
        "description": "Embedding + MultiHeadAttention + LayerNormalization, Adam",
    }


def dropout_mlp():
    """An MLP with Dropout(0.3): compared statistically over several generator seeds."""

    def build_model():
        return keras.Sequential([
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1),
        ])

    def make_data():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(192, 8)).astype("float32")
        return x, (x @ rng.normal(size=(8, 1))).astype("float32")

    return {
        "name": "dropout_mlp",
        "build_model": build_model,
        "make_data": make_data,
        "make_compile_args": lambda: {"optimizer": _adam(1e-2), "loss": "mse"},
        "epochs": 2,
        "batch_size": 32,
        "shuffle": False,
        "description": "Dense + Dropout(0.3) regression",
    }


def mixed_precision_mlp():
    """An MLP built under the mixed_float16 policy: Keras adds a LossScaleOptimizer."""

    def build_model():
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_float16")
        try:
            return keras.Sequential([
                keras.Input((16,)),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(1, dtype="float32"),  # float32 output, as Keras advises
            ])
        finally:
            keras.config.set_dtype_policy(previous)

    def make_data():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 16)).astype("float32")
        return x, np.tanh(x @ rng.normal(size=(16, 1))).astype("float32")

    return {
        "name": "mixed_precision_mlp",
        "build_model": build_model,
        "make_data": make_data,
        "make_compile_args": lambda: {"optimizer": _adam(1e-3), "loss": "mse"},
        "epochs": 2,
        "batch_size": 32,
        "description": "mixed_float16 MLP with Keras's dynamic loss scaling",
    }

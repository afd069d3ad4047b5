import keras

import xstable
from xstable.compare.worker import compile_mode


def test_compile_mode_states_what_auto_means_on_this_backend(backend):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", jit_compile="auto")
    expected = {
        "jax": "jax.jit (XLA)",
        "torch": "eager",
        # Keras turns XLA off for TF on CPU-only machines.
        "tensorflow": "tf.function graph (no XLA)"
        if xstable.active_device() == "cpu"
        else "tf.function + XLA",
    }[backend]
    assert compile_mode(model) == expected
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    assert compile_mode(model) == "eager (run_eagerly)"

import keras
import numpy as np
import pytest

from tests.helpers import to_numpy
from xstable import _counter_reset


@pytest.mark.parametrize("start", [0.0, 3.0, -2.0, float("nan"), float("inf")])
def test_reset_leaves_a_scalar_counter_at_zero(start):
    counter = keras.Variable(start, dtype="float32", trainable=False)
    _counter_reset.reset_to_zero(counter)
    assert float(to_numpy(counter.value)) == 0.0


def test_reset_after_the_jax_trainer_donated_the_value():
    """Keras's JAX trainer deletes the arrays it passes to a step; reading one fails, and the
    reset must then write instead of raising."""
    if keras.config.backend() != "jax":
        pytest.skip("donation (deleted arrays) exists only on JAX")
    counter = keras.Variable(5.0, dtype="float32", trainable=False)
    counter.value.delete()
    _counter_reset.reset_to_zero(counter)
    assert float(np.asarray(counter.value)) == 0.0


def test_reset_traced_in_a_tf_function_writes_zero():
    """Traced, the value cannot be read on the host: the reset must write, not raise."""
    if keras.config.backend() != "tensorflow":
        pytest.skip("tf.function tracing exists only on TensorFlow")
    import tensorflow as tf

    counter = keras.Variable(4.0, dtype="float32", trainable=False)
    tf.function(lambda: _counter_reset.reset_to_zero(counter))()
    assert float(to_numpy(counter.value)) == 0.0
    counter.assign(0.0)
    tf.function(lambda: _counter_reset.reset_to_zero(counter))()  # a zero is written too
    assert float(to_numpy(counter.value)) == 0.0


def test_reset_of_a_float16_counter_keeps_its_dtype():
    counter = keras.Variable(2.0, dtype="float16", trainable=False)
    _counter_reset.reset_to_zero(counter)
    assert keras.backend.standardize_dtype(counter.dtype) == "float16"
    assert float(to_numpy(counter.value)) == 0.0

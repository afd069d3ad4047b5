import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import to_numpy
from xstable.numerics import all_finite, count_nonfinite

values = st.lists(
    st.sampled_from([0.0, 1.0, -3e38, 3e38, np.nan, np.inf, -np.inf, 1e-45]), min_size=6, max_size=6
)


@settings(max_examples=40, deadline=None)
@given(values)
def test_count_and_all_finite_agree_with_numpy(raw):
    x = np.asarray(raw, dtype="float32")
    expected = int((~np.isfinite(x)).sum())
    assert int(to_numpy(count_nonfinite(x))) == expected
    assert bool(to_numpy(all_finite([x, np.ones(2, "float32")]))) == (expected == 0)


def test_integer_tensors_and_nested_structures():
    assert int(to_numpy(count_nonfinite(np.arange(4)))) == 0
    grads = {"a": [keras.ops.ones((2,)), None], "b": keras.ops.array([np.inf])}
    assert not bool(to_numpy(all_finite(grads)))
    assert bool(to_numpy(all_finite([])))


def test_usable_inside_compiled_code(backend):
    x = np.array([1.0, np.nan, 2.0], "float32")
    if backend == "jax":
        import jax

        out = jax.jit(count_nonfinite)(x)
    elif backend == "tensorflow":
        import tensorflow as tf

        out = tf.function(count_nonfinite, jit_compile=True)(tf.constant(x))
    else:
        out = count_nonfinite(x)
    assert int(to_numpy(out)) == 1

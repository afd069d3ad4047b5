import keras
import numpy as np

from tests.helpers import assert_matches_reference
from xstable._backend_gradients import value_and_gradients


def test_gradients_of_a_dense_layer_match_numpy():
    layer = keras.layers.Dense(2, use_bias=True)
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], "float32")
    layer.build((None, 3))
    layer.kernel.assign(np.arange(6, dtype="float32").reshape(3, 2) / 10)
    unused = keras.Variable(np.ones(3, "float32"))

    def fn():
        out = layer(x)
        return keras.ops.sum(out**2), out

    value, out, (d_kernel, d_bias, d_unused) = value_and_gradients(
        fn, [layer.kernel, layer.bias, unused]
    )
    kernel = np.arange(6).reshape(3, 2) / 10
    ref_out = x.astype(np.float64) @ kernel
    assert_matches_reference(value, (ref_out**2).sum(), "float32", what="value")
    assert_matches_reference(out, ref_out, "float32", what="aux output")
    assert_matches_reference(d_kernel, x.T @ (2 * ref_out), "float32", what="d kernel")
    assert_matches_reference(d_bias, (2 * ref_out).sum(0), "float32", what="d bias")
    assert_matches_reference(d_unused, np.zeros(3), "exact", what="unused variable")
    # The variables themselves are untouched.
    assert_matches_reference(layer.kernel, kernel, "float32", what="kernel after")


def test_nan_gradient_of_sqrt_at_zero_is_reported_not_hidden():
    v = keras.Variable(np.array([0.0, 4.0], "float32"))
    _, _, (grad,) = value_and_gradients(lambda: (keras.ops.sum(keras.ops.sqrt(v)), None), [v])
    grad = keras.ops.convert_to_numpy(grad)
    assert np.isinf(grad[0]) and np.isclose(grad[1], 0.25)

import keras
import numpy as np

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from xstable.backend import value_and_gradients, zero_nonfinite_gradient


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


def test_zero_nonfinite_gradient_zeroes_only_the_gradient_through_it():
    x = np.array([0.0, 1.0, 4.0], "float32")

    def fn(t):
        # sqrt'(0) is inf: zeroed on the path through zero_nonfinite_gradient, kept on the
        # direct path (a hook on `t` itself would zero both).
        guarded = keras.ops.sqrt(zero_nonfinite_gradient(t))
        return guarded + keras.ops.sqrt(t)

    value, grad = value_and_grad(fn, x)
    assert_matches_reference(value, 2.0 * np.sqrt(x.astype("float64")), "float32")
    assert_matches_reference(grad, np.array([np.inf, 1.0, 0.5]), "float32", what="gradient")


def test_zero_nonfinite_gradient_is_the_identity_forward():
    x = np.array([np.nan, -np.inf, 3e38, 0.0], "float32")
    out = to_numpy(zero_nonfinite_gradient(keras.ops.convert_to_tensor(x)))
    np.testing.assert_array_equal(out, x)

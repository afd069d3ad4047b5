"""Does TF's fused MatMul + BiasAdd + Relu keep a NaN? (docs/diagnose.md, NaNSentinel).

Prints `relu(NaN)` alone, the same NaN through a `tf.function` MatMul + BiasAdd + Relu (which
TF's grappler remapper fuses, with oneDNN on CPU), and one `fit` epoch of the NaNSentinel
tests' data (a NaN input row in batch 1, batch size 16) through `Dense(4, "relu")`: the loss
of each batch and whether the first kernel is still finite after it. On some CPUs the fused
op returns 0 for NaN, so the loss stays finite while NaN reaches the weights. Compare with
`TF_ENABLE_ONEDNN_OPTS=0`:

    KERAS_BACKEND=tensorflow python benchmarks/probe_tf_fused_relu_nan.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["KERAS_BACKEND"] = "tensorflow"

import _harness  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class _PrintBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        kernel = keras.ops.convert_to_numpy(self.model.layers[0].kernel.value)
        print(f"  batch {batch}: loss {float(logs['loss']):.4g}, first kernel finite "
              f"{bool(np.isfinite(kernel).all())}")


def main():
    _harness.print_header(
        "probe_tf_fused_relu_nan", f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}"
    )
    x = np.array([[np.nan, 1.0, -1.0]], "float32")
    print("relu alone:", tf.nn.relu(x).numpy().tolist())
    w, b = tf.Variable(tf.ones((3, 4))), tf.Variable(tf.zeros((4,)))
    fused = tf.function(lambda t: tf.nn.relu(tf.nn.bias_add(t @ w, b)))
    print("tf.function MatMul + BiasAdd + Relu:", fused(tf.constant(x)).numpy().tolist())
    rng = np.random.default_rng(0)  # the data of tests/callbacks/test_nan_sentinel.py
    data = rng.normal(size=(64, 3)).astype("float32")
    target = data @ np.array([[1.0], [-2.0], [0.5]], "float32")
    data[20, 1] = np.nan
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    print("fit, Dense(4, relu), NaN input row in batch 1:")
    model.fit(data, target, batch_size=16, epochs=1, shuffle=False, verbose=0,
              callbacks=[_PrintBatch()])


if __name__ == "__main__":
    main()

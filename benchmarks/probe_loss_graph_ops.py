"""Graph ops of each safe loss and its Keras twin, value and gradient (docs/safe-losses.md).

Traces `loss(y, activation(z))` and its gradient with respect to `z` in one `tf.function` and
counts the operations of the graph, constants apart. On TF every such op is one kernel
launch per step (no XLA), so the count is what a loss adds to a training step's dispatch.

    KERAS_BACKEND=tensorflow python benchmarks/probe_loss_graph_ops.py
"""

import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.losses import (  # noqa: E402
    SafeBinaryCrossentropy,
    SafeCategoricalCrossentropy,
    SafeLoss,
    SafeSparseCategoricalCrossentropy,
)


def _graph_ops(loss, y, units, activation):
    import tensorflow as tf

    logits = tf.Variable(tf.random.normal((512, units), seed=0))

    @tf.function
    def value_and_gradient(y_true):
        with tf.GradientTape() as tape:
            z = tf.convert_to_tensor(logits)
            p = {"softmax": tf.nn.softmax, "sigmoid": tf.sigmoid, None: tf.identity}[activation](z)
            value = loss(y_true, p)
        return value, tape.gradient(value, logits)

    graph = value_and_gradient.get_concrete_function(tf.constant(y)).graph
    return collections.Counter(op.type for op in graph.get_operations() if op.type != "Const")


def main():
    if keras.config.backend() != "tensorflow":
        raise SystemExit("Run with KERAS_BACKEND=tensorflow (this probe reads TF graphs).")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 512)
    cases = [
        (
            "BinaryCrossentropy",
            keras.losses.BinaryCrossentropy(),
            SafeBinaryCrossentropy(),
            (rng.random((512, 1)) > 0.5).astype("float32"),
            1,
            "sigmoid",
        ),
        (
            "CategoricalCrossentropy",
            keras.losses.CategoricalCrossentropy(),
            SafeCategoricalCrossentropy(),
            np.eye(10, dtype="float32")[labels],
            10,
            "softmax",
        ),
        (
            "SparseCategoricalCrossentropy",
            keras.losses.SparseCategoricalCrossentropy(),
            SafeSparseCategoricalCrossentropy(),
            labels.astype("int32"),
            10,
            "softmax",
        ),
        (
            "mse vs SafeLoss(mse)",
            keras.losses.MeanSquaredError(),
            SafeLoss("mse"),
            rng.normal(size=(512, 1)).astype("float32"),
            1,
            None,
        ),
    ]
    print("loss, keras ops, safe ops (non-constant graph ops, value + gradient)")
    for name, keras_loss, safe_loss, y, units, activation in cases:
        theirs = _graph_ops(keras_loss, y, units, activation)
        ours = _graph_ops(safe_loss, y, units, activation)
        print(f"{name}, {sum(theirs.values())}, {sum(ours.values())}")
        print(f"  safe, most common: {ours.most_common(6)}")


if __name__ == "__main__":
    main()

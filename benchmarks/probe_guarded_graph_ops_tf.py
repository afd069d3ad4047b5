"""Graph ops of one TF training step: Adam, Keras's clipping and loss scaling, GuardedOptimizer.

Traces `model.train_step` of the optimizer benchmark's MLP (256 -> 3x512 -> 1, batch 256,
MSE) in one `tf.function` and counts the operations of its graph and of the functions it
holds (a `cond`'s two branches are functions), constants apart. On TF without XLA each op is
one kernel launch per step, so the difference is what the optimizer adds to a step's
dispatch (docs/guarded-optimizer.md).

    KERAS_BACKEND=tensorflow python benchmarks/probe_guarded_graph_ops_tf.py
"""

import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.optimizers import GuardedOptimizer  # noqa: E402


def _ops(graph):
    ops = [op for op in graph.get_operations() if op.type != "Const"]
    for function in getattr(graph, "_functions", {}).values():
        inner = getattr(function, "graph", None)
        if inner is not None:
            ops += [op for op in inner.get_operations() if op.type != "Const"]
    return ops


def _step_ops(optimizer, x, y):
    import tensorflow as tf

    layers = [keras.Input((x.shape[1],))]
    layers += [keras.layers.Dense(512, activation="relu") for _ in range(3)]
    model = keras.Sequential(layers + [keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    model.train_on_batch(x, y)  # builds the optimizer's slots

    @tf.autograph.experimental.do_not_convert
    def step(features, targets):
        return model.train_step((features, targets))

    graph = tf.function(step).get_concrete_function(tf.constant(x), tf.constant(y)).graph
    return collections.Counter(op.type for op in _ops(graph))


def main():
    if keras.config.backend() != "tensorflow":
        raise SystemExit("Run with KERAS_BACKEND=tensorflow (this probe reads TF graphs).")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 256)).astype("float32")
    y = rng.normal(size=(256, 1)).astype("float32")
    variants = {
        "Adam": keras.optimizers.Adam(),
        "Adam(global_clipnorm=1)": keras.optimizers.Adam(global_clipnorm=1.0),
        "LossScaleOptimizer(Adam)": keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()),
        "GuardedOptimizer(Adam), skip": GuardedOptimizer(
            keras.optimizers.Adam(), max_consecutive_skips=None
        ),
        "GuardedOptimizer(Adam), skip + global_clipnorm": GuardedOptimizer(
            keras.optimizers.Adam(), global_clipnorm=1.0, max_consecutive_skips=None
        ),
    }
    print(f"{'optimizer':48s} {'ops':>5s}  most common")
    for name, optimizer in variants.items():
        counts = _step_ops(optimizer, x, y)
        common = ", ".join(f"{op} {n}" for op, n in counts.most_common(5))
        print(f"{name:48s} {sum(counts.values()):5d}  {common}")


if __name__ == "__main__":
    main()

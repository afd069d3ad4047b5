"""Which op of AutoScale's "auto" transform costs in a TensorFlow training step, and why.

The MLP of `bench_auto_scale.py` (20 -> 64 -> 64 -> 1, batch 256, Adam, `train_on_batch`,
`tf.function` without XLA), its first layer replaced by a small layer computing one part of
the transform on the same lognormal data (scale and center as variables), each timed against
the same MLP with an Identity first layer (paired rounds, `benchmarks/_harness.py`). Shows
that `log1p(abs(s))` costs far more than `abs` and `log1p` apart, and that
`log1p(maximum(s, -s))`, the same value, does not.

    KERAS_BACKEND=tensorflow python benchmarks/probe_auto_scale_tf_ops.py [--rounds 61]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

FEATURES = 20


class _Part(keras.layers.Layer):
    """`part(layer, x)`, with per-feature `center` and `scale` variables like AutoScale's."""

    def __init__(self, part):
        super().__init__()
        self.part = part

    def build(self, input_shape):
        self.center = self.add_weight(shape=(FEATURES,), initializer="zeros", trainable=False)
        self.scale = self.add_weight(shape=(FEATURES,), initializer="ones", trainable=False)

    def call(self, x):
        return self.part((x - self.center) * self.scale)


PARTS = {
    "scale": lambda s: s,
    "scale, abs": ops.abs,
    "scale, log1p": ops.log1p,
    "scale, log1p(abs)": lambda s: ops.log1p(ops.abs(s)),
    "scale, log1p(maximum(s, -s))": lambda s: ops.log1p(ops.maximum(s, -s)),
    "scale, sign * log1p(abs)": lambda s: ops.sign(s) * ops.log1p(ops.abs(s)),
    "scale, sign * log1p(maximum)": lambda s: ops.sign(s) * ops.log1p(ops.maximum(s, -s)),
}


def _model(first):
    model = keras.Sequential(
        [keras.Input((FEATURES,)), first]
        + [keras.layers.Dense(64, activation="relu") for _ in range(2)]
        + [keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser, rounds=61, block_seconds=0.05)
    args = parser.parse_args()
    if keras.config.backend() != "tensorflow":
        raise SystemExit("Run with KERAS_BACKEND=tensorflow (this probe times TF graphs).")
    _harness.print_header("probe_auto_scale_tf_ops")
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 2, size=(2048, FEATURES)).astype("float32")
    x[:, :5] *= 1e6
    y = rng.normal(size=(2048, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    variants = [
        _harness.Variant("Identity first", _harness.train_step_runner(
            _model(keras.layers.Identity()), x, y, 256), None)
    ]
    for name, part in PARTS.items():
        run = _harness.train_step_runner(_model(_Part(part)), x, y, 256)
        variants.append(_harness.Variant(name, run, None))
    measurement = _harness.measure(
        "first-layer parts vs Identity: MLP 20-64-64-1, batch 256, Adam, train_on_batch",
        variants,
        baseline="Identity first",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)


if __name__ == "__main__":
    main()

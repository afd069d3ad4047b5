"""Reading a scalar counter on the host right after a training step, several ways.

Keras resets every metric at the start of each `train_on_batch`; xstable's counters read their
value first and skip the write when it is already 0 (`xstable/_counter_reset.py`). Timed in
isolation such a read is a few microseconds on every backend; right after a training step it
can cost ten times that, depending on how it is made (on JAX, `float(array)` waits far longer
than `np.asarray(array)` for the same ready scalar). This probe times each way of reading, in
the situation that matters: one `train_on_batch` (MLP 64-256-256-10, batch 512, Adam, one
counter in `compile(metrics=...)`), then one timed read, repeated; the ways take turns within
each round so load changes hit all of them alike. Prints the median microseconds per read.

    KERAS_BACKEND=jax python benchmarks/probe_counter_read.py [--rounds 300]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable import _counter_reset  # noqa: E402
from xstable.losses import LossEventCount  # noqa: E402


def _reads():
    """`{name: read(variable)}`: the ways to get a scalar variable's value on the host."""
    reads = {
        "float(variable.value)": lambda variable: float(variable.value),
        "np.asarray(variable.value)": lambda variable: np.asarray(variable.value),
        "ops.convert_to_numpy(variable.value)": lambda variable: keras.ops.convert_to_numpy(
            variable.value
        ),
        "variable.value.item()": lambda variable: variable.value.item(),
        "xstable _counter_reset._is_zero_now": _counter_reset._is_zero_now,
    }
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        reads["variable.value.numpy()"] = lambda variable: variable.value.numpy()
        reads["tf.raw_ops.ReadVariableOp(handle).numpy()"] = (
            lambda variable: tf.raw_ops.ReadVariableOp(
                resource=variable.value.handle, dtype=variable.value.dtype
            ).numpy()
        )
        reads["float(tf.raw_ops.ReadVariableOp(handle))"] = lambda variable: float(
            tf.raw_ops.ReadVariableOp(resource=variable.value.handle, dtype=variable.value.dtype)
        )
        del reads["variable.value.item()"]  # TF tensors have no item()
    return reads


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--threads", default=None, help="as in the other benchmarks")
    args = parser.parse_args()
    _harness.print_header("probe_counter_read")
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    counter = LossEventCount()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=[counter],
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype("float32")
    y = rng.integers(0, 10, 512).astype("int32")
    for _ in range(20):
        model.train_on_batch(x, y)
    reads = _reads()
    times = {name: [] for name in reads}
    order = list(reads)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            model.train_on_batch(x, y)
            start = time.perf_counter()
            reads[name](counter.count)
            times[name].append(time.perf_counter() - start)
    print(f"one read of a scalar counter right after train_on_batch, {args.rounds} rounds:")
    for name in reads:
        median = statistics.median(times[name]) * 1e6
        print(f"  {name:40s} {median:8.1f} us (median)")


if __name__ == "__main__":
    main()

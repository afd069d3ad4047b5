"""Cost of GuardedOptimizer against a plain Adam step, side by side in one process.

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_optimizers.py [--repeats 9] [--batches 20]

Model: MLP 256 -> 3 x 512 (relu) -> 1, batch 256, MSE, Adam(1e-3), `compile` defaults (eager on
torch, XLA on JAX, tf.function on TF CPU). Every variant gets its own model with the same initial
weights; one repeat runs one epoch of `--batches` batches through `fit` for every variant in turn
(interleaved, order rotated each repeat), after a warm-up epoch. Printed: median seconds per step
and the ratio of medians against plain Adam. Keras's own `global_clipnorm` and
`LossScaleOptimizer` are measured as references.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import xstable  # noqa: E402
from xstable.optimizers import GuardedOptimizer  # noqa: E402

VARIANTS = {
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "keras global_clipnorm": lambda: keras.optimizers.Adam(1e-3, global_clipnorm=1.0),
    "keras LossScaleOptimizer": lambda: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(1e-3)
    ),
    "guarded (skip only)": lambda: GuardedOptimizer(keras.optimizers.Adam(1e-3)),
    "guarded (skip + global_clipnorm)": lambda: GuardedOptimizer(
        keras.optimizers.Adam(1e-3), global_clipnorm=1.0
    ),
}


def make_model(weights=None):
    model = keras.Sequential(
        [keras.Input((256,))]
        + [keras.layers.Dense(512, activation="relu") for _ in range(3)]
        + [keras.layers.Dense(1)]
    )
    if weights is not None:
        model.set_weights(weights)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    batch = 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * args.batches, 256)).astype("float32")
    y = rng.normal(size=(batch * args.batches, 1)).astype("float32")
    weights = make_model().get_weights()

    models = {}
    for name, make_optimizer in VARIANTS.items():
        model = make_model(weights)
        model.compile(optimizer=make_optimizer(), loss="mse")
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # warm-up
        models[name] = model

    times = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            start = time.perf_counter()
            models[name].fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - start) / args.batches)

    versions = xstable.library_versions()
    print(
        f"bench_optimizers: backend={versions['backend']} {versions['backend_version']}, "
        f"keras {versions['keras']}, device={xstable.active_device()}, "
        f"{args.repeats} interleaved repeats x {args.batches} steps, batch {batch}"
    )
    base = statistics.median(times["adam"])
    print(f"{'variant':36s} {'median ms/step':>15s} {'ratio vs adam':>14s}")
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:36s} {median * 1e3:15.3f} {median / base:14.3f}")


if __name__ == "__main__":
    main()

"""Cost of GuardedOptimizer against a plain Adam step, side by side in one process.

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_optimizers.py [--repeats 9] [--batches 20]

Model: MLP 256 -> 3 x 512 (relu) -> 1, batch 256, MSE, Adam(1e-3), `compile` defaults (eager on
torch, XLA on JAX, tf.function on TF CPU). Every variant gets its own model with the same initial
weights; one repeat runs one epoch of `--batches` batches through `fit` for every variant in turn
(interleaved, order rotated each repeat), after a warm-up epoch. Printed: median milliseconds per
step and the ratio of medians against plain Adam, for wall-clock time and for process CPU time
(all threads). On a machine shared with other jobs the CPU-time ratio is the steadier one: it
does not count time spent waiting for a core. Keras's own `global_clipnorm` and
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
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batches", type=int, default=8)
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

    wall = {name: [] for name in VARIANTS}
    cpu = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            models[name].fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            wall[name].append((time.perf_counter() - start_wall) / args.batches)
            cpu[name].append((time.process_time() - start_cpu) / args.batches)

    versions = xstable.library_versions()
    print(
        f"bench_optimizers: backend={versions['backend']} {versions['backend_version']}, "
        f"keras {versions['keras']}, device={xstable.active_device()}, "
        f"{args.repeats} interleaved repeats x {args.batches} steps, batch {batch}"
    )
    wall_base, cpu_base = statistics.median(wall["adam"]), statistics.median(cpu["adam"])
    print(f"{'variant':34s} {'wall ms/step':>12s} {'wall ratio':>10s} {'cpu ms/step':>12s} {'cpu ratio':>10s}")
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:34s} {w * 1e3:12.2f} {w / wall_base:10.3f} {c * 1e3:12.2f} {c / cpu_base:10.3f}")


if __name__ == "__main__":
    main()

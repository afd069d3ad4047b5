"""Cost of FiniteCheck after every layer, and of locate_nonfinite, against plain Keras.

Run per backend (one process each):

    KERAS_BACKEND=jax python benchmarks/bench_finite_check.py

1. The 3x512 MLP: `fit` on 24 batches of 256 rows, plain model vs the same model with
   `insert_finite_checks` (policies "raise" and "count"), all compiled the backend's default
   way (`jit_compile="auto"`: XLA on JAX, tf.function on TF/CPU, eager on torch) and, on TF
   and JAX, also with `jit_compile=True`. Runs are interleaved; the ratio of medians is
   printed (target: <= 1.10).
2. `locate_nonfinite` on a 50-layer MLP with a clean batch (the worst case: every stage
   runs) against one steady-state `train_on_batch` step of the same model (target: <= 3
   steps): the cached call (median), the first call (which traces the instrumented step on
   JAX, and runs it eagerly on TF), the second call (which traces it on TF), and, for
   context, the first `train_on_batch` (which compiles the train step).
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.diagnosis import locate_nonfinite  # noqa: E402
from xstable.layers import insert_finite_checks  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
# "checks", "locate" or "all": which of the two measurements to run.
PART = os.environ.get("BENCH_PART", "all")


def mlp(width, depth, features, outputs, name):
    layers = [keras.Input((features,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    layers.append(keras.layers.Dense(outputs))
    return keras.Sequential(layers, name=name)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_checks(jit_compile):
    rng = np.random.default_rng(0)
    batch, steps = 256, 24
    x = rng.normal(size=(batch * steps, 512)).astype("float32")
    y = rng.normal(size=(batch * steps, 10)).astype("float32")
    plain = mlp(512, 3, 512, 10, "plain")
    variants = {
        "plain": plain,
        "raise": insert_finite_checks(plain, policy="raise"),
        "count": insert_finite_checks(plain, policy="count"),
    }
    for model in variants.values():
        model.compile(optimizer="adam", loss="mse", jit_compile=jit_compile)
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # compile
    times = {name: [] for name in variants}
    for _ in range(REPEATS):
        for name, model in variants.items():
            times[name].append(
                timed(lambda m=model: m.fit(x, y, batch_size=batch, epochs=1, verbose=0,
                                            shuffle=False))
            )
    base = statistics.median(times["plain"])
    print(f"  jit_compile={jit_compile!r}: plain step {1e3 * base / steps:.2f} ms")
    for name in ("raise", "count"):
        ratio = statistics.median(times[name]) / base
        print(f"    FiniteCheck after every layer, policy={name!r}: {ratio:.3f}x plain")


def bench_locate():
    rng = np.random.default_rng(1)
    batch = 128
    x = rng.normal(size=(batch, 256)).astype("float32")
    y = rng.normal(size=(batch, 1)).astype("float32")
    model = mlp(256, 50, 256, 1, "deep")
    model.compile(optimizer="adam", loss="mse")
    first_step = timed(lambda: model.train_on_batch(x, y))  # traces/compiles, builds optimizer
    # The first call for a model and batch shape traces the instrumented step on JAX
    # (jax.jit) and runs it eagerly on TF, whose second call traces it (tf.function); later
    # calls reuse the trace. torch runs every call eagerly.
    first_locate = timed(lambda: locate_nonfinite(model, x, y))
    second_locate = timed(lambda: locate_nonfinite(model, x, y))
    steps, locates = [], []
    for _ in range(REPEATS):
        steps.append(timed(lambda: model.train_on_batch(x, y)))
        locates.append(timed(lambda: locate_nonfinite(model, x, y)))
    step, locate = statistics.median(steps), statistics.median(locates)

    def line(label, seconds):
        return f"    {label}: {1e3 * seconds:.1f} ms = {seconds / step:.2f} training steps\n"

    print(
        f"  50-layer MLP (256 wide, batch {batch}): steady train step {1e3 * step:.1f} ms\n"
        + line(f"locate_nonfinite, cached (median of {REPEATS})", locate)
        + line("locate_nonfinite, 1st call (traces on JAX; eager on TF, torch)", first_locate)
        + line("locate_nonfinite, 2nd call (traces on TF)", second_locate)
        + line("for context, the first train_on_batch (compiles the train step)", first_step),
        end="",
    )


def main():
    backend = keras.config.backend()
    print(f"bench_finite_check: backend={backend}, keras {keras.__version__}, "
          f"repeats={REPEATS}, cpus={os.cpu_count()}")
    if PART in ("all", "checks"):
        print("FiniteCheck cost (3x512 MLP, batch 256):")
        bench_checks("auto")
        if backend in ("jax", "tensorflow"):
            bench_checks(True)
    if PART in ("all", "locate"):
        print("locate_nonfinite cost (clean batch, every stage runs):")
        bench_locate()


if __name__ == "__main__":
    main()

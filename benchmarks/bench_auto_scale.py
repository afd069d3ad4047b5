"""Benchmark AutoScale against keras.layers.Normalization, and its streaming adapt.

Usage:
    KERAS_BACKEND=jax python benchmarks/bench_auto_scale.py            # both parts
    KERAS_BACKEND=torch python benchmarks/bench_auto_scale.py --rows 1000000 --skip-train

Part 1 (training step): the same MLP (20 -> 64 -> 64 -> 1) with Normalization, AutoScale("robust")
or AutoScale("auto") first, trained with Adam on batches of 256 rows. The three are timed in
interleaved rounds in one process; each round times one epoch of `--steps` steps after warm-up.
Prints the median ratio of AutoScale to Normalization (ratios, not absolute times).

Part 2 (adapt): AutoScale.adapt over `--rows` rows x 20 features produced by a generator in
batches of 100 000 rows, so the data never exists as one array. Reports peak traced memory
(tracemalloc, which sees NumPy's allocations) against the data's float64 size.
"""

import argparse
import statistics
import time
import tracemalloc

import keras
import numpy as np

from xstable.layers import AutoScale

FEATURES = 20


def _model(first_layer):
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            first_layer,
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def bench_training_step(steps, rounds, batch_size=256):
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 2, size=(steps * batch_size, FEATURES)).astype("float32")
    x[:, :5] *= 1e6
    y = rng.normal(size=(len(x), 1)).astype("float32")
    normalization = keras.layers.Normalization()
    normalization.adapt(x)
    variants = {"Normalization": normalization}
    for method in ("robust", "auto"):
        layer = AutoScale(method=method)
        layer.adapt(x)
        variants[f"AutoScale({method})"] = layer
    models = {}
    for name, layer in variants.items():
        model = _model(layer)
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)  # warm-up
        models[name] = model
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - start) / steps)
    base = statistics.median(times["Normalization"])
    print(f"training step, batch {batch_size} x {FEATURES}, {steps} steps x {rounds} rounds")
    for name, samples in times.items():
        ratios = [t / b for t, b in zip(samples, times["Normalization"], strict=True)]
        print(
            f"  {name:20s} median ratio to Normalization {statistics.median(ratios):.3f} "
            f"(ratio of medians {statistics.median(samples) / base:.3f})"
        )


def _batches(rows, batch_rows=100_000, seed=0):
    rng = np.random.default_rng(seed)
    produced = 0
    while produced < rows:
        n = min(batch_rows, rows - produced)
        batch = rng.standard_normal((n, FEATURES))
        batch[:, 0] = rng.standard_cauchy(n)
        batch[:, 1] = rng.lognormal(0, 3, n)
        batch[:, 2] *= 1e6
        batch[rng.random(n) < 1e-3, 3] = np.nan
        produced += n
        yield batch


def bench_adapt(rows):
    layer = AutoScale()
    tracemalloc.start()
    start = time.perf_counter()
    layer.adapt(_batches(rows))
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    summary = layer.adapt_summary
    data_bytes = rows * FEATURES * 8
    print(f"adapt over {rows:,} rows x {FEATURES} features (generator, 100k-row batches)")
    print(f"  time {elapsed:.1f} s, {rows / elapsed / 1e6:.2f} M rows/s")
    print(
        f"  peak traced memory {peak / 2**20:.1f} MiB (one batch is "
        f"{100_000 * FEATURES * 8 / 2**20:.1f} MiB; the data would be {data_bytes / 2**20:,.0f} "
        f"MiB as one float64 array); sketch {summary['sketch_bytes'] / 2**20:.1f} MiB"
    )
    print(
        f"  quantile rank error bound {summary['quantile_rank_error_bound']:.4%} "
        f"(a priori {AutoScale().sketch_capacity} capacity: "
        f"see QuantileSketch.worst_case_rank_error), NaN counted: {summary['nan_count'][3]}"
    )
    print(f"  feature methods: {summary['feature_methods'][:4]} ...")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-adapt", action="store_true")
    args = parser.parse_args()
    print(f"backend {keras.config.backend()}, keras {keras.__version__}")
    if not args.skip_train:
        bench_training_step(args.steps, args.rounds)
    if not args.skip_adapt:
        bench_adapt(args.rows)


if __name__ == "__main__":
    main()

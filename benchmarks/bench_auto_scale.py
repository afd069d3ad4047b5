"""Benchmark AutoScale against keras.layers.Normalization, and its streaming adapt.

Usage:
    KERAS_BACKEND=jax python benchmarks/bench_auto_scale.py            # both parts
    KERAS_BACKEND=torch python benchmarks/bench_auto_scale.py --rows 1000000 --skip-train
    options: [--rounds 15] [--block-seconds 0.3] [--threads N] [--against REV]

Part 1 (training step): the same MLP (20 -> 64 -> 64 -> 1, same initial weights) with
Normalization, AutoScale("robust") or AutoScale("auto") first, trained with Adam on batches of
256 rows (`compile` defaults, `train_on_batch`). Timed with `benchmarks/_harness.py`: paired
rounds of ~0.3 s blocks, order random per round, each AutoScale block divided by the Normalization block
of the same round. Prints the median paired ratio with its IQR and whether the <= 1.05 target
(issue #6) is met, missed or undecided at the current load. `--against REV` adds both
AutoScale variants as they were at git revision REV to the same rounds (paired new/old).

Part 2 (adapt): AutoScale.adapt over `--rows` rows x 20 features produced by a generator in
batches of 100 000 rows, so the data never exists as one array. Reports peak traced memory
(tracemalloc, which sees NumPy's allocations) against the data's float64 size.
"""

import argparse
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import _xstable_at_revision  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.layers import AutoScale  # noqa: E402

TARGET = 1.05
CONTROL = "Normalization again (A/A control)"
POOL_BATCHES = 8

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


def bench_training_step(args, batch_size=256, before=None):
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 2, size=(POOL_BATCHES * batch_size, FEATURES)).astype("float32")
    x[:, :5] *= 1e6
    y = rng.normal(size=(len(x), 1)).astype("float32")
    normalization = keras.layers.Normalization()
    normalization.adapt(x)
    control = keras.layers.Normalization()
    control.adapt(x)
    layers = {"Normalization": (normalization, None), CONTROL: (control, None)}
    for method in ("robust", "auto"):
        layer = AutoScale(method=method)
        layer.adapt(x)
        layers[f"AutoScale({method})"] = (layer, TARGET)
    if before is not None:
        for method in ("robust", "auto"):
            layer = before.layers.AutoScale(method=method)
            layer.adapt(x)
            layers[f"{method} at {args.against}"] = (layer, None)
    keras.utils.set_random_seed(0)
    dense_weights = _model(keras.layers.Identity()).get_weights()
    variants = []
    for name, (layer, target) in layers.items():
        model = _model(layer)
        # Same initial Dense weights in every model; the scaling layers keep their own state.
        dense = [w for lyr in model.layers[1:] for w in lyr.weights]
        for variable, value in zip(dense, dense_weights, strict=True):
            variable.assign(value)
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        run = _harness.train_step_runner(model, x, y, batch_size)
        variants.append(_harness.Variant(name, run, target, control=name == CONTROL))
    measurement = _harness.measure(
        f"training step vs Normalization: MLP {FEATURES}-64-64-1, batch {batch_size}, Adam",
        variants,
        baseline="Normalization",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)
    if before is not None:
        for method in ("robust", "auto"):
            _harness.print_paired_ratio(
                measurement, f"AutoScale({method})", f"{method} at {args.against}"
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
    _harness.add_arguments(parser)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-adapt", action="store_true")
    _xstable_at_revision.add_against_argument(parser, "AutoScale")
    args = parser.parse_args()
    before = _xstable_at_revision.import_against(args.against)
    _harness.print_header(
        "bench_auto_scale", "" if before is None else f"against {before.__name__}"
    )
    if not args.skip_train:
        bench_training_step(args, before=before)
    if not args.skip_adapt:
        bench_adapt(args.rows)


if __name__ == "__main__":
    main()

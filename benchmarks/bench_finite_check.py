"""Cost of FiniteCheck after every layer, and of locate_nonfinite, against plain Keras.

Run per backend (one process each):

    KERAS_BACKEND=jax python benchmarks/bench_finite_check.py

1. The 3x512 MLP (batch 256, Adam, `train_on_batch`): the plain model vs copies with the
   same initial weights and `insert_finite_checks` (policies "raise" and "count"), compiled
   the backend's default way (`jit_compile="auto"`: XLA on JAX, tf.function on TF/CPU, eager
   on torch) and, on TF and JAX, also with `jit_compile=True`. Paired rounds with an A/A
   control (benchmarks/_harness.py, docs/benchmarks.md): median paired ratio and IQR, verdict
   against the <= 1.10 target. `--threads N`, `--rounds`, `--block-seconds` as in the harness.
   `--against REV` adds the checks as they were at git revision REV
   (`_xstable_at_revision.py`) as two more variants in the same rounds and prints the paired
   new/old ratio per policy, which the machine's load drift cancels out of.
2. `locate_nonfinite` on a 50-layer MLP with a clean batch (the worst case: every stage
   runs) against one steady-state `train_on_batch` step of the same model (target: <= 3
   steps): the cached call (median), the first call (which traces the instrumented step on
   JAX, and runs it eagerly on TF), the second call (which traces it on TF), and, for
   context, the first `train_on_batch` (which compiles the train step).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import _xstable_at_revision  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.diagnosis import locate_nonfinite  # noqa: E402
from xstable.layers import FiniteCheckMonitor, insert_finite_checks  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
TARGET = 1.10
CONTROL = "plain again (A/A control)"
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


WITH_MONITOR = "FiniteCheck after every layer, raise + FiniteCheckMonitor"


def step_and_monitor_runner(model, x, y, batch_size):
    """`train_on_batch` between the monitor's batch hooks, as `fit` calls them.

    The monitor's `on_train_begin` runs once here, before the first step, as in `fit`: on
    JAX it installs the step traced without host callbacks. Each step is then wrapped in
    `on_train_batch_begin` (JAX: queues a copy of the counters the last step left and reads
    the copies already computed) and `on_train_batch_end` (TF graphs: reads the counters;
    in `fit` on JAX Keras would run it in its worker thread, and it does nothing there).
    """
    monitor = FiniteCheckMonitor()
    monitor.set_model(model)
    monitor.on_train_begin()
    batches = [
        (keras.ops.convert_to_tensor(x[start : start + batch_size]),
         keras.ops.convert_to_tensor(y[start : start + batch_size]))
        for start in range(0, len(x) - batch_size + 1, batch_size)
    ]
    batch_index = [0]

    def run(steps):
        for step in range(steps):
            xb, yb = batches[step % len(batches)]
            monitor.on_train_batch_begin(batch_index[0])
            model.train_on_batch(xb, yb)
            monitor.on_train_batch_end(batch_index[0])
            batch_index[0] += 1
        keras.ops.convert_to_numpy(model.trainable_weights[-1])  # as train_step_runner

    return run


def bench_checks(jit_compile, args, before=None):
    """FiniteCheck after every layer vs the plain model: paired rounds (benchmarks/_harness.py)."""
    rng = np.random.default_rng(0)
    batch, pool = 256, 8
    x = rng.normal(size=(batch * pool, 512)).astype("float32")
    y = rng.normal(size=(batch * pool, 10)).astype("float32")
    weights = mlp(512, 3, 512, 10, "init").get_weights()

    def fresh(name):
        model = mlp(512, 3, 512, 10, name)
        model.set_weights(weights)
        return model

    models = {
        "plain": fresh("plain"),
        CONTROL: fresh("plain_again"),
        "FiniteCheck after every layer, raise": insert_finite_checks(
            fresh("for_raise"), policy="raise"
        ),
        "FiniteCheck after every layer, count": insert_finite_checks(
            fresh("for_count"), policy="count"
        ),
    }
    if before is not None:
        for policy in ("raise", "count"):
            models[f"{policy} at {args.against}"] = before.layers.insert_finite_checks(
                fresh(f"old_{policy}"), policy=policy
            )
    models[WITH_MONITOR] = insert_finite_checks(fresh("for_raise_monitor"), policy="raise")
    timed = []
    for name, model in models.items():
        model.compile(optimizer="adam", loss="mse", jit_compile=jit_compile)
        target = TARGET if name.startswith("FiniteCheck") else None
        if name == WITH_MONITOR:
            run = step_and_monitor_runner(model, x, y, batch)
        else:
            run = _harness.train_step_runner(model, x, y, batch)
        timed.append(_harness.Variant(name, run, target, control=name == CONTROL))
    measurement = _harness.measure(
        f"FiniteCheck cost, jit_compile={jit_compile!r}: MLP 512-3x512-10, batch {batch}, Adam, "
        "train_on_batch",
        timed,
        baseline="plain",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)
    if before is not None:
        for policy in ("raise", "count"):
            _harness.print_paired_ratio(
                measurement, f"FiniteCheck after every layer, {policy}", f"{policy} at {args.against}"
            )


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser)
    _xstable_at_revision.add_against_argument(parser, "the checks")
    args = parser.parse_args()
    before = _xstable_at_revision.import_against(args.against)
    backend = keras.config.backend()
    against = "" if before is None else f", against {before.__name__}"
    _harness.print_header(
        "bench_finite_check", f"part={PART}, locate repeats={REPEATS}{against}"
    )
    if PART in ("all", "checks"):
        bench_checks("auto", args, before)
        if backend in ("jax", "tensorflow"):
            bench_checks(True, args, before)
    if PART in ("all", "locate"):
        print("locate_nonfinite cost (clean batch, every stage runs):")
        bench_locate()


if __name__ == "__main__":
    main()

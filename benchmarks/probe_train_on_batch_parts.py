"""Where a safe loss's extra goes inside `train_on_batch`: resets, the step, the logs.

`train_on_batch` does three things per call: reset every metric (`model.reset_metrics()`),
run the compiled step (`model.train_function`), convert the logs to Python floats. This
probe does the same three with the same public methods, timing each, for Keras's loss,
Keras's loss with one idle `LossEventCount` in `compile(metrics=...)` (what reporting one
counter costs by itself) and the safe loss (MLP 64-256-256-k, batch 512, Adam, the models
and data of `bench_losses.py`). Variants take turns in a random order each round; printed
are the medians of per-round means, in microseconds, and each piece's difference to Keras.
TF and torch only (JAX's loop threads its state through private methods). The log
conversion is written out (`float(ops.convert_to_numpy(value))` per log, as Keras
does), so it is close to, not identical with, Keras's own.

    KERAS_BACKEND=<tensorflow|torch> python benchmarks/probe_train_on_batch_parts.py
        [--only bce] [--rounds 300] [--calls 20]
"""

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import bench_losses  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable import losses as xstable_losses  # noqa: E402
from xstable.losses import LossEventCount  # noqa: E402

PIECES = ("reset", "step", "logs", "call")


def _logs_to_floats(logs):
    return {key: float(keras.ops.convert_to_numpy(value)) for key, value in logs.items()}


def _compiled_step(model, x, y):
    """Runs `model.train_function` on one batch as `train_on_batch` does (TF, torch)."""
    if keras.config.backend() == "tensorflow":

        def data():
            yield (x, y, None)

        return model.train_function(data())
    return model.train_function([(x, y, None)])


def timed_call(model, x, y):
    """One `train_on_batch`-like call; returns `{piece: seconds}`."""
    start = time.perf_counter()
    model.reset_metrics()
    reset = time.perf_counter()

    logs = _compiled_step(model, x, y)
    step = time.perf_counter()
    _logs_to_floats(logs)
    end = time.perf_counter()
    return {"reset": reset - start, "step": step - reset, "logs": end - step, "call": end - start}


def _variants(case, x, y):
    _, keras_loss, class_name, loss_args, units, activation, _ = case
    weights = bench_losses.initial_weights(units, activation)
    losses = {
        "keras": (bench_losses.fresh_copy(keras_loss), None),
        "keras + 1 idle counter": (
            bench_losses.fresh_copy(keras_loss),
            [LossEventCount(name="idle_count")],
        ),
        "safe": (getattr(xstable_losses, class_name)(*loss_args), None),
    }
    models = {}
    for label, (loss, metrics) in losses.items():
        model = bench_losses.compiled_model(units, activation, weights, loss, metrics)
        for _ in range(10):  # builds, compiles and warms up, as train_on_batch would
            model.train_on_batch(x, y)
        models[label] = model
    return models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="bce", help="one of bce, cce, scce, mse")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--calls", type=int, default=20, help="calls per variant per round")
    parser.add_argument("--threads", default=None, help="as in the other benchmarks")
    args = parser.parse_args()
    if keras.config.backend() == "jax":
        raise SystemExit(
            "probe_train_on_batch_parts covers TF and torch: JAX's train_on_batch threads the "
            "model state through its compiled step with private methods, which this probe "
            "does not imitate. Run it with KERAS_BACKEND=tensorflow or torch."
        )
    cases = bench_losses._cases()
    (key,) = bench_losses._selected(args.only, cases)
    _harness.print_header("probe_train_on_batch_parts")
    case = cases[key]
    x = np.random.default_rng(0).normal(size=(bench_losses.BATCH, 64)).astype("float32")
    y = case[-1][: bench_losses.BATCH]
    models = _variants(case, x, y)
    means = {label: {piece: [] for piece in PIECES} for label in models}
    order = list(models)
    for _ in range(args.rounds):
        random.shuffle(order)
        for label in order:
            total = dict.fromkeys(PIECES, 0.0)
            for _ in range(args.calls):
                for piece, seconds in timed_call(models[label], x, y).items():
                    total[piece] += seconds
            for piece in PIECES:
                means[label][piece].append(total[piece] / args.calls)
    print(f"{case[0]}: {args.rounds} rounds of {args.calls} calls, median of round means (us)")
    medians = {
        label: {piece: statistics.median(values) * 1e6 for piece, values in pieces.items()}
        for label, pieces in means.items()
    }
    print(f"{'variant':26s}" + "".join(f"{piece:>16s}" for piece in PIECES))
    for label, pieces in medians.items():
        cells = []
        for piece in PIECES:
            extra = pieces[piece] - medians["keras"][piece]
            cells.append(
                f"{pieces[piece]:8.0f}" + (f" ({extra:+4.0f})" if label != "keras" else " " * 7)
            )
        print(f"{label:26s}" + "".join(f"{cell:>16s}" for cell in cells))


if __name__ == "__main__":
    main()

"""Cost of StabilityMonitor in `fit`, next to plain Keras.

Usage:
    KERAS_BACKEND=jax python benchmarks/bench_stability_monitor.py [--rounds 7] [--steps 200]

Model: MLP 256 -> 3 x 512 (relu) -> 1, batch 256, MSE, Adam(1e-3), all-finite data,
`compile` defaults (XLA on JAX, tf.function on TF, eager on torch). Every variant has its own
model with the same initial weights. Timed with `benchmarks/_harness.py`: paired rounds, each
running one `fit` epoch of the same batches per variant in a random order; the clocks run from
batch 1 to the end of the epoch (fit's setup, the monitor's first snapshot and the first call
of its compiled weights check are outside; the epoch-end weights check is inside). Printed per variant: the median of the per-round
ratios to plain `fit`, with its 95% interval, wall-clock and CPU time. A block must hold
several snapshots for their cost to be amortized honestly: `--steps 200` holds two of the
default `snapshot_every=100` (and the epoch-begin one, outside the clock).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.callbacks import StabilityMonitor  # noqa: E402

PLAIN = "plain fit"
TARGET = 1.02


def build_model(initial=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((256,))]
        + [keras.layers.Dense(512, activation="relu") for _ in range(3)]
        + [keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    if initial is not None:
        model.set_weights(initial)
    return model


def fit_runner(model, x, y, batch_size, make_callbacks):
    """`run(steps)`: one `fit` epoch of `steps + 1` batches, timed from batch 1 to epoch end."""

    class _Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                self.start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.end = time.perf_counter(), time.process_time()

    rows = len(x)
    cache = {}

    def run(steps):
        if steps not in cache:
            order = np.arange((steps + 1) * batch_size) % rows
            cache.clear()
            cache[steps] = (x[order], y[order])
        xs, ys = cache[steps]
        clock = _Clock()
        model.fit(
            xs,
            ys,
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[*make_callbacks(), clock],
        )
        return clock.end[0] - clock.start[0], clock.end[1] - clock.start[1]

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser, rounds=7, block_seconds=1.0)
    parser.add_argument(
        "--steps",
        type=int,
        default=200,
        help="steps per block, fixed so that every block holds the default snapshots "
        "(default 200; 0 calibrates to --block-seconds)",
    )
    args = parser.parse_args()
    _harness.print_header("bench_stability_monitor.py")

    batch = 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 32, 256)).astype("float32")
    y = rng.normal(size=(batch * 32, 1)).astype("float32")
    initial = build_model().get_weights()
    variants = [
        (PLAIN, lambda: [], None),
        ("TerminateOnNaN (Keras)", lambda: [keras.callbacks.TerminateOnNaN()], None),
        ("StabilityMonitor() defaults", lambda: [StabilityMonitor(verbose=0)], TARGET),
        (
            "StabilityMonitor, weights checked every batch",
            lambda: [StabilityMonitor(check_weights_every=1, verbose=0)],
            None,
        ),
        (
            "StabilityMonitor, snapshot every 10",
            lambda: [StabilityMonitor(snapshot_every=10, verbose=0)],
            None,
        ),
    ]
    timed = [
        _harness.Variant(
            name=name,
            run=fit_runner(build_model(initial), x, y, batch, make),
            target=target,
        )
        for name, make, target in variants
    ]
    measurement = _harness.measure(
        "fit with monitor callbacks, ratio to plain fit",
        timed,
        baseline=PLAIN,
        rounds=args.rounds,
        block_seconds=args.block_seconds,
        steps_per_block=args.steps or None,
    )
    _harness.print_measurement(measurement)


if __name__ == "__main__":
    main()

"""Cost of StabilityMonitor in `fit` when nothing goes wrong, next to plain Keras.

Usage:
    KERAS_BACKEND=jax python benchmarks/bench_stability_monitor.py [--rounds 7] [--steps 200]

Targets: the defaults <= 1.02x a plain `fit` step; the recovery policy (`"replace"`) with the
weights check off <= 1.03x, with one host copy of the state at most.

Variants, each with its own model from the same initial weights:
- `plain fit`: the baseline; its A/A control, a second copy, shows the noise floor.
- `TerminateOnNaN (Keras)`: Keras's own per-batch NaN check, for scale.
- `StabilityMonitor() defaults` (target 1.02).
- `replace, weights check off` (target 1.03): `check_weights_every=None`.
- `count, weights check off`: the same loss watching without any copy, so that
  `replace / count` is the price of the snapshots alone.
- `weights checked every batch`: `check_weights_every=1`.

Model: MLP 256 -> 3 x 512 (relu) -> 1, batch 256, MSE, Adam(1e-3), all-finite data,
`compile` defaults (XLA on JAX, tf.function on TF, eager on torch). Timed with
`benchmarks/_harness.py`: paired rounds, each running one `fit` epoch of the same batches per
variant in a random order; the clocks run from batch 1 to the end of the epoch (fit's setup and
the monitor's first copy at `on_train_begin` are outside). The clock callback is `async_safe`,
so that the plain baseline keeps Keras's asynchronous logs (on JAX, a callback that is not
async-safe makes every step wait for its logs). A block must hold a whole number of refreshes
of the default `snapshot_every=100` for their cost to be amortized honestly: `--steps 200`
holds two.

Then the memory of one refresh: the snapshot's size, and the peak of the host memory that
`tracemalloc` sees while a refresh replaces an existing copy, in units of that size ("one host
copy of the state at most" reads as at most 1.0 above the copy already kept).
"""

import argparse
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.callbacks import StabilityMonitor  # noqa: E402

PLAIN = "plain fit"
TARGET_DEFAULTS = 1.02
TARGET_RECOVERY = 1.03
BATCH = 256


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


def fit_runner(model, x, y, make_callbacks):
    """`run(steps)`: one `fit` epoch of `steps + 1` batches, timed from batch 1 to epoch end."""

    class _Clock(keras.callbacks.Callback):
        async_safe = True  # as in `_harness.fit_step_runner`: the clock alone keeps async logs

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                self.start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.end = time.perf_counter(), time.process_time()

    rows = len(x)
    cache = {}

    def run(steps):
        if steps not in cache:
            order = np.arange((steps + 1) * BATCH) % rows
            cache.clear()
            cache[steps] = (x[order], y[order])
        xs, ys = cache[steps]
        clock = _Clock()
        model.fit(
            xs,
            ys,
            batch_size=BATCH,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[*make_callbacks(), clock],
        )
        if steps == 0:
            return 0.0, 0.0
        return clock.end[0] - clock.start[0], clock.end[1] - clock.start[1]

    return run


def snapshot_memory(model, x, y):
    """Returns `(snapshot MB, peak extra host memory of one refresh / snapshot size)`."""
    monitor = StabilityMonitor(check_weights_every=None, verbose=0)
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])
    model_values, optimizer_values = monitor.last_good_state
    size = sum(v.nbytes for v in model_values + optimizer_values)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    # The refresh `_good_step` makes every `snapshot_every` steps, called on its own: a private
    # method of xstable's own callback, so that nothing else allocates inside the window.
    monitor._take_snapshot(model)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / 2**20, (peak - before) / size


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

    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * 32, 256)).astype("float32")
    y = rng.normal(size=(BATCH * 32, 1)).astype("float32")
    initial = build_model().get_weights()

    def monitor(**kwargs):
        return lambda: [StabilityMonitor(verbose=0, **kwargs)]

    variants = [
        (PLAIN, lambda: [], None, False),
        (PLAIN + " (A/A control)", lambda: [], None, True),
        ("TerminateOnNaN (Keras)", lambda: [keras.callbacks.TerminateOnNaN()], None, False),
        ("StabilityMonitor() defaults", monitor(), TARGET_DEFAULTS, False),
        ("replace, weights check off", monitor(check_weights_every=None), TARGET_RECOVERY, False),
        (
            "count, weights check off",
            monitor(check_weights_every=None, policy="count"),
            None,
            False,
        ),
        ("weights checked every batch", monitor(check_weights_every=1), None, False),
    ]
    timed = [
        _harness.Variant(
            name=name,
            run=fit_runner(build_model(initial), x, y, make),
            target=target,
            control=control,
        )
        for name, make, target, control in variants
    ]
    measurement = _harness.measure(
        "fit with StabilityMonitor, ratio to plain fit",
        timed,
        baseline=PLAIN,
        rounds=args.rounds,
        block_seconds=args.block_seconds,
        steps_per_block=args.steps or None,
    )
    _harness.print_measurement(measurement)
    _harness.print_paired_ratio(
        measurement, "replace, weights check off", "count, weights check off"
    )
    megabytes, peak = snapshot_memory(build_model(initial), x, y)
    print(
        f"snapshot: {megabytes:.1f} MB of weights and optimizer state; one refresh allocates "
        f"at peak {peak:.2f}x that on the host (tracemalloc)",
        flush=True,
    )


if __name__ == "__main__":
    main()

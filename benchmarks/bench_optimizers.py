"""Cost of GuardedOptimizer against a plain Adam step, side by side in one process.

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_optimizers.py [--rounds 15] [--block-seconds 0.3]
        [--copies K] [--against REV]

Model: MLP 256 -> 3 x 512 (relu) -> 1, batch 256, MSE, Adam(1e-3), `compile` defaults (eager on
torch, XLA on JAX, tf.function on TF CPU). Every variant gets its own model with the same
initial weights. Timed with `benchmarks/_harness.py`: paired rounds, each running every
variant's `train_on_batch` steps over the same batches (about 0.3 s per block, order random per
round); per round each variant's time is divided by plain Adam's time of that round. Printed:
the median paired ratio and its interquartile range, for wall-clock and process CPU time, and
whether the <= 1.05 target (issue #3/#4) is met, missed or undecided at the current load.
Keras's own `global_clipnorm` and `LossScaleOptimizer` are measured as references (no target),
and a second plain Adam model as an A/A control (its spread is the noise floor of the run).
`--against REV` adds both guarded variants as they were at git revision REV
(`_xstable_at_revision.py`) to the same rounds and prints the paired new/old ratios.
`--copies K` builds K models per variant and times a different one each round
(`_harness.Copies`), so one model's own speed offset averages out.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import _xstable_at_revision  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.optimizers import GuardedOptimizer  # noqa: E402

TARGET = 1.05
CONTROL = "adam again (A/A control)"
BATCH = 256
POOL_BATCHES = 8


def variants(before=None, revision=None):
    found = [
        ("adam", lambda: keras.optimizers.Adam(1e-3), None),
        (CONTROL, lambda: keras.optimizers.Adam(1e-3), None),
        ("keras global_clipnorm", lambda: keras.optimizers.Adam(1e-3, global_clipnorm=1.0), None),
        (
            "keras LossScaleOptimizer",
            lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)),
            None,
        ),
        ("guarded (skip only)", lambda: GuardedOptimizer(keras.optimizers.Adam(1e-3)), TARGET),
        (
            "guarded (skip + global_clipnorm)",
            lambda: GuardedOptimizer(keras.optimizers.Adam(1e-3), global_clipnorm=1.0),
            TARGET,
        ),
    ]
    if before is not None:
        guarded = before.optimizers.GuardedOptimizer
        found += [
            (f"skip only at {revision}", lambda: guarded(keras.optimizers.Adam(1e-3)), None),
            (
                f"skip + clip at {revision}",
                lambda: guarded(keras.optimizers.Adam(1e-3), global_clipnorm=1.0),
                None,
            ),
        ]
    if keras.config.backend() == "torch":
        # "auto" is "branch" on CPU; the sync-free select path is shown for reference.
        found.append(
            (
                "guarded (skip + clip), select",
                lambda: GuardedOptimizer(
                    keras.optimizers.Adam(1e-3), global_clipnorm=1.0, skip_mode="select"
                ),
                None,
            )
        )
    return found


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
    _harness.add_arguments(parser)
    _harness.add_copies_argument(parser)
    _xstable_at_revision.add_against_argument(parser, "GuardedOptimizer")
    args = parser.parse_args()
    before = _xstable_at_revision.import_against(args.against)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * POOL_BATCHES, 256)).astype("float32")
    y = rng.normal(size=(BATCH * POOL_BATCHES, 1)).astype("float32")
    weights = make_model().get_weights()

    timed = []
    for name, make_optimizer, target in variants(before, args.against):
        def make_run(_, make_optimizer=make_optimizer):
            model = make_model(weights)
            model.compile(optimizer=make_optimizer(), loss="mse")
            return _harness.train_step_runner(model, x, y, BATCH)

        run = _harness.copies_of(make_run, args.copies)
        timed.append(_harness.Variant(name, run, target, control=name == CONTROL))

    against = "" if before is None else f"against {before.__name__}"
    _harness.print_header("bench_optimizers", against)
    measurement = _harness.measure(
        f"optimizer step vs plain Adam: MLP 256-3x512-1, batch {BATCH}, MSE, train_on_batch",
        timed,
        baseline="adam",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)
    if before is not None:
        _harness.print_paired_ratio(
            measurement, "guarded (skip only)", f"skip only at {args.against}"
        )
        _harness.print_paired_ratio(
            measurement, "guarded (skip + global_clipnorm)", f"skip + clip at {args.against}"
        )


if __name__ == "__main__":
    main()

"""The training step alone: safe losses against their Keras twins, without Keras's loop.

`bench_losses.py` times `train_on_batch` (or `fit`), whose Python around the step (metric
resets, log conversion, on JAX the state write-back) adds a per-call cost for every reported
metric, and noise. This probe calls each model's `train_step` as Keras compiles it, back to
back on one batch: `jax.jit` with the state donated (JAX), `tf.function` with the model's
`jit_compile` (TF), eagerly (torch). A ratio here is what the loss changes in the step
itself, and nothing else. Same models, batch, paired and randomly ordered rounds as
`bench_losses.py` (`_harness.measure`); `--against REV` adds the safe loss as it was at REV.

    KERAS_BACKEND=<jax|tensorflow|torch> python benchmarks/probe_loss_train_step.py
        [--only scce,cce] [--against REV] [--rounds 201] [--block-seconds 0.05] [--copies 4]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import _xstable_at_revision  # noqa: E402
import bench_losses  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable import losses as xstable_losses  # noqa: E402


def compiled_step_runner(model, x, y):
    """`run(steps)`: `steps` calls of `model.train_step` on one batch, compiled as Keras does."""
    model.train_on_batch(x, y)  # builds the optimizer's and the metrics' variables
    backend = keras.config.backend()
    batch = (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y))
    if backend == "jax":
        import jax

        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.optimizer.variables],
            [v.value for v in model.metrics_variables],
        )
        step = jax.jit(model.train_step, donate_argnums=0)
        carried = {"state": state}

        def run(steps):
            state = carried["state"]
            for _ in range(steps):
                _, state = step(state, batch)
            jax.block_until_ready(state)
            carried["state"] = state

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        step = tf.function(model.train_step, jit_compile=bool(model.jit_compile))
    else:
        step = model.train_step

    def run(steps):
        for _ in range(steps):
            step(batch)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser, rounds=201, block_seconds=0.05)
    _harness.add_copies_argument(parser)
    parser.add_argument(
        "--only", default=None, help="comma-separated subset of bce,cce,scce,mse (default: all)"
    )
    _xstable_at_revision.add_against_argument(parser, "each safe loss")
    args = parser.parse_args()
    cases = bench_losses._cases()
    keys = bench_losses._selected(args.only, cases)
    before = _xstable_at_revision.import_against(args.against)
    _harness.print_header(
        "probe_loss_train_step", "" if before is None else f"against {before.__name__}"
    )
    x = np.random.default_rng(0).normal(size=(bench_losses.BATCH, 64)).astype("float32")
    for key in keys:
        _time_case(cases[key], x, args, before)


def _time_case(case, x, args, before):
    title, keras_loss, class_name, loss_args, units, activation, y = case
    y = y[: bench_losses.BATCH]
    weights = bench_losses.initial_weights(units, activation)

    def keras_twin():
        return bench_losses.fresh_copy(keras_loss)

    labelled = [("keras", keras_twin, None), ("keras again (A/A control)", keras_twin, None)]
    if before is not None:
        old_class = getattr(before.losses, class_name)
        labelled.append((f"safe at {args.against}", lambda: old_class(*loss_args), None))
    new_class = getattr(xstable_losses, class_name)
    labelled.append(("safe", lambda: new_class(*loss_args), bench_losses.TARGET))
    variants = []
    for label, make_loss, target in labelled:

        def make_run(copy, make_loss=make_loss):
            model = bench_losses.compiled_model(units, activation, weights, make_loss())
            return compiled_step_runner(model, x, y)

        run = _harness.copies_of(make_run, args.copies)
        variants.append(_harness.Variant(label, run, target, control="control" in label))
    measurement = _harness.measure(
        f"{title}: train_step only",
        variants,
        baseline="keras",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)
    if before is not None:
        _harness.print_paired_ratio(measurement, "safe", f"safe at {args.against}")


if __name__ == "__main__":
    main()

"""What each part of GuardedOptimizer's TF step costs: a ladder of Adam subclasses.

Each rung adds one part of what the guard does on TF (`GuardedOptimizer._graph_apply`) to a
plain Adam step, written directly in TF so nothing else changes:

1. Adam's update inside a graph `cond` whose predicate is cheap (one gradient entry finite),
2. + the global norm (`tf.nn.l2_loss` per gradient, as `_backend_tf_norm`) as the predicate,
3. + the three counters the guard writes each step (consecutive and total skips, last norm),

then GuardedOptimizer itself (skip only, `on_max_skips="accept"`). Timed like
`bench_optimizers.py` (its MLP 256 -> 3x512 -> 1, batch 256, MSE, `train_on_batch`, paired
rounds with `_harness.py`, an A/A control), so the difference between rungs is what a part
costs in a step. TF only:

    KERAS_BACKEND=tensorflow python benchmarks/probe_guard_parts_tf.py [--rounds 201]
        [--block-seconds 0.05] [--copies 3]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import bench_optimizers  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.optimizers import GuardedOptimizer  # noqa: E402

CONTROL = "adam again (A/A control)"


def _ladder():
    import tensorflow as tf

    from xstable.optimizers import _backend_tf_norm

    class AdamInCond(keras.optimizers.Adam):
        """Rung 1: the update inside a `cond` on a cheap predicate."""

        def predicate(self, grads):
            return tf.math.is_finite(grads[-1][0])

        def count(self, finite, norm):
            pass

        def apply(self, grads, trainable_variables=None):
            finite = self.predicate(grads)

            def step():
                keras.optimizers.Adam.apply(self, grads, trainable_variables)

            tf.cond(finite, step, lambda: None)

    class NormInCond(AdamInCond):
        """Rung 2: the global norm decides."""

        def predicate(self, grads):
            norm = tf.sqrt(_backend_tf_norm.sum_of_squares(grads))
            finite = tf.math.is_finite(norm)
            self.count(finite, norm)
            return finite

    class CountersToo(NormInCond):
        """Rung 3: and the guard's three counters are written."""

        def count(self, finite, norm):
            if not hasattr(self, "_counters"):
                with tf.init_scope():
                    self._counters = [
                        tf.Variable(0, dtype=tf.int64, trainable=False),
                        tf.Variable(0, dtype=tf.int64, trainable=False),
                        tf.Variable(0.0, trainable=False),
                    ]
            consecutive, skipped, last_norm = self._counters
            zero = tf.constant(0, tf.int64)
            consecutive.assign(tf.where(finite, zero, consecutive + 1))
            skipped.assign_add(tf.where(finite, zero, tf.constant(1, tf.int64)))
            last_norm.assign(norm)

    return [
        ("1. adam in a cond, cheap predicate", lambda: AdamInCond(1e-3)),
        ("2. + global norm as predicate", lambda: NormInCond(1e-3)),
        ("3. + the guard's three counters", lambda: CountersToo(1e-3)),
        (
            "GuardedOptimizer, skip only",
            lambda: GuardedOptimizer(keras.optimizers.Adam(1e-3), on_max_skips="accept"),
        ),
    ]


def main():
    if keras.config.backend() != "tensorflow":
        raise SystemExit("Run with KERAS_BACKEND=tensorflow (the ladder is written in TF).")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser, rounds=201, block_seconds=0.05)
    _harness.add_copies_argument(parser)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch = bench_optimizers.BATCH
    x = rng.normal(size=(batch * bench_optimizers.POOL_BATCHES, 256)).astype("float32")
    y = rng.normal(size=(batch * bench_optimizers.POOL_BATCHES, 1)).astype("float32")
    weights = bench_optimizers.make_model().get_weights()
    rungs = [
        ("adam", lambda: keras.optimizers.Adam(1e-3)),
        (CONTROL, lambda: keras.optimizers.Adam(1e-3)),
    ]
    timed = []
    for name, make_optimizer in rungs + _ladder():

        def make_run(_, make_optimizer=make_optimizer):
            model = bench_optimizers.make_model(weights)
            model.compile(optimizer=make_optimizer(), loss="mse")
            return _harness.train_step_runner(model, x, y, batch)

        run = _harness.copies_of(make_run, args.copies)
        timed.append(_harness.Variant(name, run, None, control=name == CONTROL))
    _harness.print_header("probe_guard_parts_tf")
    measurement = _harness.measure(
        "the guard's parts on TF, each rung against plain Adam",
        timed,
        baseline="adam",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)


if __name__ == "__main__":
    main()

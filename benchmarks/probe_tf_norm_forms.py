"""Forms of the global gradient norm inside a guarded TF step: `square`+`sum`, `l2_loss`, `vdot`.

`xstable.optimizers.clipping.global_norm` on TF uses `tf.nn.l2_loss` per gradient
(`xstable/optimizers/_backend_tf_norm.py`). This times the guarded Adam step (skip + global
clipping, `bench_optimizers.py`'s MLP and batches) with each form of the sum of squares, paired
in the same rounds (`_harness`, 3 model copies per variant), and prints each form against the
`keras.ops` form `sum(square(g))` that TF runs as two kernels and a temporary per gradient.

    KERAS_BACKEND=tensorflow python benchmarks/probe_tf_norm_forms.py [--rounds 151]
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
from keras import ops  # noqa: E402

from xstable.optimizers import GuardedOptimizer, clipping  # noqa: E402


def _square_sum(grads):
    return ops.sum(ops.stack([ops.sum(ops.square(g)) for g in grads if g is not None]))


def _l2_loss(grads):
    import tensorflow as tf

    return 2.0 * tf.add_n([tf.nn.l2_loss(g) for g in grads if g is not None])


def _vdot(grads):
    flat = [ops.reshape(g, (-1,)) for g in grads if g is not None]
    return ops.sum(ops.stack([ops.vdot(f, f) for f in flat]))


class NormFormGuard(GuardedOptimizer):
    """The guard with its global norm computed as `sqrt(sum_of_squares(grads))`."""

    def __init__(self, inner, sum_of_squares, **kwargs):
        super().__init__(inner, **kwargs)
        self._sum_of_squares = sum_of_squares

    def _decide(self, grads, norm=None):
        return super()._decide(grads, clipping._safe_sqrt(self._sum_of_squares(grads)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser, rounds=151, block_seconds=0.05)
    _harness.add_copies_argument(parser)
    parser.set_defaults(copies=3)
    args = parser.parse_args()
    if keras.config.backend() != "tensorflow":
        raise SystemExit("Run with KERAS_BACKEND=tensorflow: the forms differ only in TF graphs.")

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    rows = bench_optimizers.BATCH * bench_optimizers.POOL_BATCHES
    x = rng.normal(size=(rows, 256)).astype("float32")
    y = rng.normal(size=(rows, 1)).astype("float32")
    weights = bench_optimizers.make_model().get_weights()

    def guarded(form):
        return lambda: NormFormGuard(
            keras.optimizers.Adam(1e-3), form, global_clipnorm=1.0, on_max_skips="accept"
        )

    named = [
        ("adam", lambda: keras.optimizers.Adam(1e-3)),
        ("adam again (A/A control)", lambda: keras.optimizers.Adam(1e-3)),
        ("keras global_clipnorm", lambda: keras.optimizers.Adam(1e-3, global_clipnorm=1.0)),
        ("guard, square + sum", guarded(_square_sum)),
        ("guard, l2_loss", guarded(_l2_loss)),
        ("guard, vdot", guarded(_vdot)),
    ]
    timed = []
    for name, make_optimizer in named:
        def make_run(_, make_optimizer=make_optimizer):
            model = bench_optimizers.make_model(weights)
            model.compile(optimizer=make_optimizer(), loss="mse")
            return _harness.train_step_runner(model, x, y, bench_optimizers.BATCH)

        run = _harness.copies_of(make_run, args.copies)
        timed.append(_harness.Variant(name, run, control="control" in name))
    _harness.print_header("probe_tf_norm_forms")
    measurement = _harness.measure(
        "guarded Adam step (skip + global clip) by form of the norm, vs plain Adam",
        timed,
        baseline="adam",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)
    for form in ("guard, l2_loss", "guard, vdot"):
        _harness.print_paired_ratio(measurement, form, "guard, square + sum")


if __name__ == "__main__":
    main()

"""Where a safe loss's training step spends more time than its Keras twin's: a cProfile diff.

Not a timing benchmark (cProfile slows Python code several-fold and ops in C not at all, so
its totals are not step times): it ranks the functions by how much more time the safe
loss's steps spend in them than the Keras loss's, over the same number of `train_on_batch`
steps of `bench_losses.py`'s model and data, to show what a change should target.

    KERAS_BACKEND=torch python benchmarks/probe_loss_step_profile.py scce [--steps 300] [--top 25]
"""

import argparse
import cProfile
import os
import pstats
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import bench_losses  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable import losses as xstable_losses  # noqa: E402


def _profiled(run, steps):
    profile = cProfile.Profile()
    profile.enable()
    run(steps)
    profile.disable()
    stats = pstats.Stats(profile).stats
    return {
        f"{path.split('site-packages/')[-1]}:{line}({name})": (own, calls, cumulative)
        for (path, line, name), (_, calls, own, cumulative, _) in stats.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loss", choices=["bce", "cce", "scce", "mse"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    _harness.print_header("probe_loss_step_profile", f"loss={args.loss}, steps={args.steps}")
    title, keras_loss, class_name, loss_args, units, activation, y = bench_losses._cases()[
        args.loss
    ]
    x = np.random.default_rng(0).normal(size=(len(y), 64)).astype("float32")
    weights = bench_losses._model(units, activation).get_weights()
    profiles = {}
    for label, loss in (
        ("keras", keras_loss),
        ("safe", getattr(xstable_losses, class_name)(*loss_args)),
    ):
        model = bench_losses._model(units, activation)
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        run = _harness.train_step_runner(model, x, y, bench_losses.BATCH)
        run(10)  # warm-up, untimed
        profiles[label] = _profiled(run, args.steps)
    keras_profile, safe_profile = profiles["keras"], profiles["safe"]
    rows = []
    for key in set(keras_profile) | set(safe_profile):
        before = keras_profile.get(key, (0.0, 0, 0.0))
        after = safe_profile.get(key, (0.0, 0, 0.0))
        rows.append((after[0] - before[0], key, before[1], after[1], after[2]))
    rows.sort(reverse=True)
    per_step = 1e6 / args.steps
    print(f"{title}: own time per step, safe minus keras (profiled, so inflated), top {args.top}")
    print(f"{'extra us/step':>14s}  {'calls keras -> safe':>20s}  {'safe cum us/step':>16s}  function")
    for extra, key, calls_before, calls_after, cumulative in rows[: args.top]:
        print(
            f"{extra * per_step:14.1f}  {calls_before:>9d} -> {calls_after:<8d}  "
            f"{cumulative * per_step:16.1f}  {key}"
        )
    print("largest savings (Keras's own loss code the safe loss does not run):")
    for extra, key, calls_before, calls_after, _ in rows[-5:]:
        print(f"{extra * per_step:14.1f}  {calls_before:>9d} -> {calls_after:<8d}  {key}")


if __name__ == "__main__":
    main()

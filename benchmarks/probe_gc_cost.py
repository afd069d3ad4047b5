"""What the harness's untimed per-block `gc.collect()` costs, with and without `gc.freeze`.

Builds the models `bench_finite_check.py` times (the 3x512 MLP plain and with FiniteCheck
after every layer, `train_on_batch`), then prints the number of objects the collector
tracks, the time of one full collection before and after freezing them, and how many
collections Python started by itself, and of which generation, during a number of steps.
Quoted in `benchmarks/_harness.py` and docs/benchmarks.md.

    KERAS_BACKEND=torch python benchmarks/probe_gc_cost.py [--steps 200]
"""

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.layers import insert_finite_checks  # noqa: E402


def _mlp(name):
    layers = [keras.Input((512,))]
    layers += [keras.layers.Dense(512, activation="relu") for _ in range(3)]
    return keras.Sequential([*layers, keras.layers.Dense(10)], name=name)


def _collect_ms():
    start = time.perf_counter()
    gc.collect()
    return 1e3 * (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    _harness.print_header("probe_gc_cost", f"steps={args.steps}")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 512)).astype("float32")
    y = rng.normal(size=(2048, 10)).astype("float32")
    plain = _mlp("plain")
    checked = _mlp("checked")
    checked.set_weights(plain.get_weights())
    checked = insert_finite_checks(checked, policy="count")
    runs = []
    for model in (plain, checked):
        model.compile(optimizer="adam", loss="mse")
        run = _harness.train_step_runner(model, x, y, 256)
        run(10)
        runs.append(run)
    started = []
    gc.callbacks.append(lambda phase, info: started.append(info["generation"]) if phase == "start" else None)
    for frozen in (False, True):
        if frozen:
            gc.collect()
            gc.freeze()
        started.clear()
        for run in runs:
            run(args.steps)
        by_generation = {g: started.count(g) for g in (0, 1, 2)}
        # As in the harness: one full collection after a block of steps.
        print(
            f"frozen={frozen}: {len(gc.get_objects())} tracked objects "
            f"(+{gc.get_freeze_count()} frozen); gc.collect() after the steps "
            f"{_collect_ms():.1f} ms; collections Python started during {args.steps} steps "
            f"of each model, by generation: {by_generation}"
        )
    gc.unfreeze()


if __name__ == "__main__":
    main()

"""What a GuardedOptimizer `apply` adds to a plain Adam `apply` on eager torch, and why.

Times `optimizer.apply(grads, variables)` alone (no forward or backward pass) for the
`bench_optimizers.py` model (MLP 256-3x512-1, ~660k weights), interleaved in random order per
round, with the same fixed gradients: plain Adam, Adam preceded by the guard's global norm
(`xstable.optimizers.clipping.global_norm` and its host read) or by the bare
`torch._foreach_norm`, and the guard (skip only) with and without its logged counters. The
"extra" column is the median per-round difference to plain Adam. Quoted in
docs/guarded-optimizer.md; `nox -s bench` does not run it.

    KERAS_BACKEND=torch python benchmarks/probe_guarded_apply_torch.py [--rounds 60]
"""

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import bench_optimizers  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.optimizers import GuardedOptimizer, clipping  # noqa: E402


def _runner(optimizer, weights, rng, before=None):
    model = bench_optimizers.make_model(weights)
    optimizer.build(model.trainable_variables)
    # Small gradients: the weights barely move, so every call does the same work.
    grads = [
        keras.ops.convert_to_tensor(rng.normal(size=v.shape).astype("float32") * 1e-4)
        for v in model.trainable_variables
    ]

    def run():
        if before is not None:
            before(grads)
        optimizer.apply(grads, model.trainable_variables)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=5, help="apply calls per timed block")
    args = parser.parse_args()
    if keras.config.backend() != "torch":
        raise SystemExit("Run with KERAS_BACKEND=torch (this probe times eager torch).")
    import torch

    warnings.simplefilter("ignore", RuntimeWarning)  # on_max_skips="raise" without a monitor
    _harness.print_header("probe_guarded_apply_torch", f"rounds={args.rounds}")
    rng = np.random.default_rng(0)
    weights = bench_optimizers.make_model().get_weights()
    variants = {
        "adam": _runner(keras.optimizers.Adam(1e-3), weights, rng),
        "adam + global_norm read": _runner(
            keras.optimizers.Adam(1e-3), weights, rng, lambda g: float(clipping.global_norm(g))
        ),
        "adam + torch._foreach_norm": _runner(
            keras.optimizers.Adam(1e-3), weights, rng, torch._foreach_norm
        ),
        "guarded (skip only)": _runner(GuardedOptimizer(keras.optimizers.Adam(1e-3)), weights, rng),
        "guarded, log_counters=False": _runner(
            GuardedOptimizer(keras.optimizers.Adam(1e-3), log_counters=False), weights, rng
        ),
        "adam again (A/A control)": _runner(keras.optimizers.Adam(1e-3), weights, rng),
    }
    for run in variants.values():
        for _ in range(20):
            run()
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            run = variants[name]
            start = time.perf_counter()
            for _ in range(args.calls):
                run()
            times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    base = np.asarray(times["adam"])
    print(f"{'variant':30s} {'us/apply':>9s} {'extra us (median of paired)':>28s}")
    for name, values in times.items():
        values = np.asarray(values)
        print(f"{name:30s} {np.median(values):9.1f} {np.median(values - base):28.1f}")
    # Not timed in context: the same norm on gradients that stay in cache.
    grads = [keras.ops.convert_to_tensor(np.ones(w.shape, "float32")) for w in weights]
    for _ in range(20):
        torch._foreach_norm(grads)
    start = time.perf_counter()
    for _ in range(200):
        torch._foreach_norm(grads)
    isolated = (time.perf_counter() - start) / 200 * 1e6
    print(f"torch._foreach_norm alone, repeated on the same gradients: {isolated:.1f} us")


if __name__ == "__main__":
    main()

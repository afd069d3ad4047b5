"""A/B: GuardedOptimizer clipping before its `cond` (commit 7557267) vs another version.

On JAX, GuardedOptimizer's `stateless_apply` now clips inside the `lax.cond` branch that
applies the update, which removes ~5 MB of bytes accessed per step from the compiled train step
(`probe_jax_step_fusions.py`). This times the placements side by side in one process: the
baseline `xstable/optimizers/guarded_optimizer.py` is read from git (`git show 7557267:...`)
and imported under another name; the candidate is the working tree's, or the one at
`--candidate REV` (0f0eca3 also clipped inside TF's `cond`, which was then reverted). Model and
data as `bench_optimizers.py` (MLP 256-3x512-1, batch 256, MSE, Adam, `global_clipnorm=1.0`).
Needs the repository's git history:

    KERAS_BACKEND=jax python benchmarks/ab_guarded_clip_placement.py --threads 1 --rounds 81
    KERAS_BACKEND=tensorflow python benchmarks/ab_guarded_clip_placement.py --threads 1 \\
        --rounds 41 --candidate 0f0eca3
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import bench_optimizers  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.optimizers import GuardedOptimizer  # noqa: E402

PREVIOUS = "7557267"


def _guarded_optimizer_at(revision):
    """GuardedOptimizer as it was at `revision`, registered under another package name."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(
        ["git", "show", f"{revision}:xstable/optimizers/guarded_optimizer.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    source = source.replace('package="xstable"', f'package="xstable_{revision}"')
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location(f"guarded_optimizer_{revision}", file.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(file.name)
    return module.GuardedOptimizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser, rounds=41)
    parser.add_argument("--candidate", default=None, help="git revision (default: working tree)")
    args = parser.parse_args()
    _harness.print_header("ab_guarded_clip_placement")
    baseline = f"clip before the cond ({PREVIOUS})"
    candidate_name = f"candidate ({args.candidate or 'working tree'})"
    previous = _guarded_optimizer_at(PREVIOUS)
    candidate = _guarded_optimizer_at(args.candidate) if args.candidate else GuardedOptimizer
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256 * 8, 256)).astype("float32")
    y = rng.normal(size=(256 * 8, 1)).astype("float32")
    weights = bench_optimizers.make_model().get_weights()
    variants = []
    for name, make in (
        (baseline, lambda: previous(keras.optimizers.Adam(1e-3), global_clipnorm=1.0)),
        (candidate_name, lambda: candidate(keras.optimizers.Adam(1e-3), global_clipnorm=1.0)),
        ("plain adam", lambda: keras.optimizers.Adam(1e-3)),
    ):
        model = bench_optimizers.make_model(weights)
        model.compile(optimizer=make(), loss="mse")
        run = _harness.train_step_runner(model, x, y, 256)
        variants.append(_harness.Variant(name, run, None))
    measurement = _harness.measure(
        "GuardedOptimizer(Adam, global_clipnorm=1.0): clip placement",
        variants,
        baseline=baseline,
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)


if __name__ == "__main__":
    main()

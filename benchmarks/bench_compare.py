"""What `xstable compare` costs over training the same targets on each backend by hand.

"By hand" is what a user would do without xstable compare: one process per backend that
imports Keras and trains every target with `run_spec` from the same initial weights
(`KERAS_BACKEND=<b> python -c ...`), one backend after the other, and the same processes run
side by side with the same number of parallel jobs as compare; once more with the
environment compare gives its workers (`OMP_WAIT_POLICY=PASSIVE`, so that PyTorch's OpenMP
threads do not spin on shared cores), which isolates what compare itself adds. The compare
run does the same training plus shared-weight building, NaN location, per-layer inspection,
plots and the report. Runs are interleaved (by hand, compare, by hand, ...) and the median
is reported, as ratios.

Usage (needs every backend to compare installed, e.g. the `nox -s compare` environment):
    python benchmarks/bench_compare.py [--repeats 3] [--targets t1 t2 ...] [--jobs 2]
With fewer backends installed it compares those only.
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_BY_HAND = """
import sys, time
from xstable.compare.targets import initial_weights_for, load_spec
from xstable.training import run_spec
for target in sys.argv[1:]:
    spec = load_spec(target)
    run_spec(spec, initial_weights=initial_weights_for(target, spec))
"""


def _installed_backends():
    return [b for b in ("tensorflow", "torch", "jax") if importlib.util.find_spec(b)]


def _by_hand(backends, targets, jobs, extra_env=None):
    """Wall time of one plain process per backend, `jobs` of them at a time."""
    start = time.perf_counter()
    pending = list(backends)
    running = []
    while pending or running:
        while pending and len(running) < jobs:
            backend = pending.pop(0)
            running.append(
                subprocess.Popen(
                    [sys.executable, "-c", _BY_HAND, *targets],
                    env={**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "",
                         "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
                         **(extra_env or {})},
                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
        for process in list(running):
            if process.poll() is not None:
                if process.returncode != 0:
                    raise RuntimeError(f"by-hand run failed with status {process.returncode}")
                running.remove(process)
        time.sleep(0.05)
    return time.perf_counter() - start


def _compare(backends, targets, jobs):
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "xstable", "compare", *targets, "--out", out, "--backends",
             ",".join(backends), "--jobs", str(jobs), "--fail-on", "none", "--quiet"],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "KERAS_BACKEND": backends[-1]},
        )
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 3))
    parser.add_argument("--targets", nargs="*", default=None,
                        help="targets (default: every seed scenario variant)")
    args = parser.parse_args()
    backends = _installed_backends()
    if args.targets:
        targets = args.targets
    else:
        from xstable.compare.targets import default_targets

        targets = default_targets()
    print(f"{len(targets)} targets x {backends}, jobs={args.jobs}, {args.repeats} repeats, "
          f"{os.cpu_count()} CPUs")
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    runs = {
        "by hand, sequential": lambda: _by_hand(backends, targets, 1),
        f"by hand, {args.jobs} jobs": lambda: _by_hand(backends, targets, args.jobs),
        f"by hand, {args.jobs} jobs, compare's env": lambda: _by_hand(
            backends, targets, args.jobs, passive
        ),
        "compare": lambda: _compare(backends, targets, args.jobs),
    }
    times = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, measure in runs.items():
            times[name].append(measure())
            print(f"repeat {repeat + 1}: {name} {times[name][-1]:.1f}s", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, value in medians.items():
        print(f"median {name:<36} {value:7.1f}s")
    for name in list(medians)[:-1]:
        print(f"compare / {name}: {medians['compare'] / medians[name]:.2f}")


if __name__ == "__main__":
    main()

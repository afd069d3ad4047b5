"""Peak memory of the state recording `xstable compare` does while a worker trains a target.

A compare worker trains each target with `run_spec` and a `StateRecorder` as its
`before_step` hook, so that the parent can take the first divergent (or NaN) step apart
without a replay. This benchmark trains a model of about 10M parameters
(Dense 784 -> 2048 -> 2048 -> 2048 -> 10, Adam, small random data) for 200 steps on the
active backend, twice, each in a fresh process whose peak RSS (`ru_maxrss`) is read at the
end:

- `baseline`: the same training without recording (`run_spec` from the shared weights);
- `record`: the worker's own code path (`_Worker.run_target`, in-process, with the reference
  worker's `state_budget_bytes`, 64 MiB by default).

Both first build and save the shared initial weights as the reference worker does. It prints
the model's size (parameters x 4 bytes), one recorded state's size (weights, optimizer
variables and the batch), both peaks, their difference in model sizes, and what the recorder
still holds after the run.

Usage:
    KERAS_BACKEND=jax python benchmarks/bench_compare_memory.py [--steps 200] [--batch-size 16]
        [--budget-mib 64]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_WIDTHS = (784, 2048, 2048, 2048, 10)
_STEPS_ENV = "XSTABLE_BENCH_MEMORY_STEPS"
_BATCH_ENV = "XSTABLE_BENCH_MEMORY_BATCH"


def memory_spec():
    """The benchmark's target: about 10M parameters, `steps` steps of one epoch."""
    import keras
    import numpy as np

    from xstable.training import TrainingSpec

    steps = int(os.environ.get(_STEPS_ENV, "200"))
    batch_size = int(os.environ.get(_BATCH_ENV, "16"))

    def build_model():
        layers = [keras.Input((_WIDTHS[0],))]
        layers += [keras.layers.Dense(w, activation="relu") for w in _WIDTHS[1:-1]]
        layers.append(keras.layers.Dense(_WIDTHS[-1]))
        return keras.Sequential(layers)

    def make_data():
        rng = np.random.default_rng(0)
        rows = steps * batch_size
        x = rng.normal(size=(rows, _WIDTHS[0])).astype("float32")
        y = rng.integers(0, _WIDTHS[-1], size=(rows,)).astype("int32")
        return x, y

    return TrainingSpec(
        "compare_memory",
        build_model,
        make_data,
        lambda: {
            "optimizer": keras.optimizers.Adam(1e-4),
            "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        },
        epochs=1,
        batch_size=batch_size,
    )


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _Sink:
    def __init__(self):
        self.events = []

    def send(self, event, **fields):
        self.events.append({"event": event, **fields})


def _watch_states():
    """Counts the recorded states alive at once (each state a weakly referenced dict)."""
    import weakref

    from xstable.compare import inspection

    class State(dict):
        pass

    alive, seen = weakref.WeakValueDictionary(), {"max": 0, "taken": 0}
    snapshot = inspection._snapshot

    def watched(*args):
        state = State(snapshot(*args))
        alive[seen["taken"]] = state
        seen["taken"] += 1
        seen["max"] = max(seen["max"], len(alive))
        return state

    inspection._snapshot = watched
    return seen


def _child(mode, budget_bytes):
    import keras

    from xstable.compare.inspection import _nbytes
    from xstable.compare.targets import target_slug
    from xstable.compare.worker import _Worker
    from xstable.training import run_spec

    target = f"{os.path.abspath(__file__)}:memory_spec"
    slug = target_slug(target)
    with tempfile.TemporaryDirectory() as weights_dir:
        plan = {
            "backend": keras.config.backend(),
            "weights_dir": weights_dir,
            "targets": [[target, slug]],
            "state_budget_bytes": budget_bytes,
        }
        sink = _Sink()
        worker = _Worker(plan, sink)
        worker.build_weights()
        weights, _ = worker.initial_weights(slug)
        params = sum(int(w.size) for w in weights)
        setup_peak = _peak_mib()
        out = {"mode": mode, "backend": plan["backend"], "params": params,
               "setup_peak_mib": setup_peak}
        if mode == "baseline":
            keras.utils.clear_session(free_memory=False)
            result = run_spec(worker.spec(target), initial_weights=weights)
            out["steps"] = len(result.losses)
        else:
            alive = _watch_states()
            worker.run_target(target, slug)
            out["states_alive_max"] = alive["max"]
            done = [e for e in sink.events if e["event"] == "done"][-1]
            if done["status"] != "completed":
                raise RuntimeError(done["record"]["error"]["message"])
            out["steps"] = len(done["record"]["result"]["losses"])
            recorder = worker.recorders[target]
            held = {id(s): s for s in [recorder.latest, recorder.previous,
                                       *recorder.states.values()] if s is not None}
            out["states_held"] = len(held)
            out["state_mib"] = _nbytes(recorder.latest) / 2**20
            out["held_mib"] = sum(_nbytes(s) for s in held.values()) / 2**20
            out["complete"] = recorder.complete
        out["peak_mib"] = _peak_mib()
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--budget-mib", type=float, default=64.0,
                        help="state_budget_bytes of the recording worker, in MiB")
    parser.add_argument("--child", choices=("baseline", "record"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = int(args.budget_mib * 2**20)
    if args.child:
        _child(args.child, budget)
        return
    env = {**os.environ, _STEPS_ENV: str(args.steps), _BATCH_ENV: str(args.batch_size),
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    runs = {}
    for mode in ("baseline", "record"):
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", mode,
             "--budget-mib", str(args.budget_mib)],
            env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            sys.exit(f"{mode} run failed:\n{done.stderr[-4000:]}")
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    base, rec = runs["baseline"], runs["record"]
    model_mib = base["params"] * 4 / 2**20
    extra = rec["peak_mib"] - base["peak_mib"]
    print(f"backend {base['backend']}: {base['params']:,} parameters, {rec['steps']} steps, "
          f"batch {args.batch_size}, state budget {args.budget_mib:g} MiB")
    print(f"  model size (params x 4 B):      {model_mib:8.1f} MiB")
    print(f"  one recorded state:             {rec['state_mib']:8.1f} MiB "
          f"({rec['state_mib'] / model_mib:.2f} model sizes)")
    print(f"  peak RSS without recording:     {base['peak_mib']:8.1f} MiB")
    print(f"  peak RSS with recording:        {rec['peak_mib']:8.1f} MiB")
    print(f"  recording adds:                 {extra:8.1f} MiB "
          f"({extra / model_mib:.2f} model sizes)")
    print(f"  states held after the run:      {rec['states_held']} "
          f"({rec['held_mib']:.1f} MiB; every step kept: {rec['complete']})")
    print(f"  most states alive at once:      {rec['states_alive_max']}")


if __name__ == "__main__":
    main()

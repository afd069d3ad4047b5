"""One backend's side of `xstable compare`: `python -m xstable.compare.worker --plan PLAN`.

Started by the orchestrator with `KERAS_BACKEND` set. It trains every target of the plan in
this one process (paying the backend's import once), sends each result as a JSON event on
its event stream, then waits for `capture`/`inspect` commands on stdin to take a step apart
for the per-layer comparison. See `xstable.compare.protocol`. It writes only into the run's
private folder (plans, weights, states, inspections; data-only `.npz`), never into the
report folder: the orchestrator writes the report.

The backend that builds the initial weights (`build_weights` in the plan) first builds every
target's model and saves its weights to `<weights_dir>/<target>.npz`; the other workers load
them, so every backend starts from the same weights. If the builder fails for a target, the
orchestrator writes `<target>.unavailable` and the other workers initialise from the spec's
seed instead, recording `same_initial_weights: false`.
"""

import argparse
import ctypes
import dataclasses
import json
import os
import signal
import sys
import time
import traceback

from xstable.compare.exchange import load_tree, save_tree
from xstable.compare.protocol import (
    decode,
    encode,
    initial_weights_path,
    weights_unavailable_path,
)

__all__ = ["main", "compile_mode", "stochastic_layers", "NO_GPU_MARKER"]

_WEIGHTS_POLL_S = 0.05
_SEED_STRIDE = 7919  # Generator seeds of the repeated runs of a stochastic model.
_STOCHASTIC_AMOUNTS = ("rate", "dropout", "recurrent_dropout", "stddev")


def stochastic_layers(model):
    """Names the layers of `model` that draw random numbers when training (dropout, noise).

    A layer counts when it owns a seed generator and a positive `rate`, `dropout`,
    `recurrent_dropout` or `stddev` (Dropout and its spatial variants, GaussianNoise,
    GaussianDropout, AlphaDropout, LSTM/GRU with dropout); nested models are searched.
    """
    import keras

    found = []

    def draws(layer):
        if not any(isinstance(getattr(layer, a, None), keras.random.SeedGenerator)
                   for a in ("seed_generator", "_seed_generator")):
            return False
        amounts = [getattr(layer, a, 0) for a in _STOCHASTIC_AMOUNTS]
        return any(isinstance(v, (int, float)) and v > 0 for v in amounts)

    def visit(layer):
        for inner in getattr(layer, "layers", None) or []:
            visit(inner)
        cell = getattr(layer, "cell", None)  # LSTM, GRU, SimpleRNN draw in their cell
        if draws(layer) or (isinstance(cell, keras.layers.Layer) and draws(cell)):
            found.append(layer.name)

    for layer in model.layers:
        visit(layer)
    return found


def _with_dtype_policy(build_model, policy):
    """`build_model` under a global dtype policy (`clear_session` resets it, so it is set at
    every build)."""
    import keras

    def build():
        keras.config.set_dtype_policy(policy)
        return build_model()

    build._xstable_policy = policy
    return build


def _loss_scale(model):
    """The dynamic loss scale of a model's `LossScaleOptimizer`, or `None` without one."""
    import keras

    optimizer = getattr(model, "optimizer", None)
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    scale = getattr(optimizer, "dynamic_scale", None)  # created when the optimizer is built
    if scale is None:
        return float(optimizer.initial_scale)
    return float(keras.ops.convert_to_numpy(scale))


def loss_scale_summary(scales):
    """Summarizes the loss scale before each step (and after the last) of a run.

    Returns:
        `None` without loss scaling, else a dict `initial`, `final` and `overflow_steps`
        (the steps whose gradients overflowed: Keras skipped their update and halved the
        scale).
    """
    if not scales or scales[0] is None:
        return None
    overflow = [step for step in range(len(scales) - 1) if scales[step + 1] < scales[step]]
    return {"initial": scales[0], "final": scales[-1], "overflow_steps": overflow}


def _reseeded(build_model, seed):
    """`build_model` whose layers' seed generators start from `seed` (weights are loaded)."""
    import keras

    def build():
        keras.utils.set_random_seed(seed)
        return build_model()

    return build
NO_GPU_MARKER = "xstable-compare: no GPU visible"


class _Events:
    def __init__(self, stream):
        self._stream = stream

    def send(self, event, **fields):
        self._stream.write(encode({"event": event, **fields}))
        self._stream.flush()


def _redirect_stdout_to_stderr():
    """Keeps the event stream clean: user prints and backend chatter go to the log."""
    events = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


def compile_mode(model):
    """Says how a compiled model's train step runs on the active backend, e.g. "jit (XLA)"."""
    from xstable import backend

    if getattr(model, "run_eagerly", False):
        return "eager (run_eagerly)"
    return backend.train_step_mode(bool(model.jit_compile))


def _error_record(error):
    return {
        "type": type(error).__name__,
        "message": str(error),
        "traceback": traceback.format_exc(limit=20),
    }


def _die_with_parent(parent_pid):
    """Asks Linux to kill this worker if the orchestrator dies (even by SIGKILL).

    The orchestrator kills its workers on SIGINT and SIGTERM; this covers the deaths it cannot
    act on, so that a hanging spec never lives on as an orphan.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        try:  # Started through a wrapper (`--python`), or orphaned before the request?
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)  # The orchestrator died before the request took effect.
        except PermissionError:
            pass


class _Worker:
    def __init__(self, plan, events):
        self.plan = plan
        self.events = events
        self.specs = {}
        self.weights = {}
        self.recorders = {}
        self.weights_dir = plan["weights_dir"]
        self.backend = plan["backend"]
        self.import_error = None

    def import_modules(self):
        """Imports the plan's `imports` (modules that register custom layers for `.keras`)."""
        import importlib

        for module in self.plan.get("imports") or []:
            try:
                importlib.import_module(module)
            except Exception as error:
                self.import_error = ImportError(
                    f"`imports` names {module!r}, which failed to import: "
                    f"{type(error).__name__}: {error}"
                )
                return

    def spec(self, target):
        """Loads a target's spec once; a target that failed to load raises the same error again."""
        from xstable.compare.targets import SavedModelOptions, load_spec

        if target not in self.specs:
            try:
                if self.import_error is not None:
                    raise self.import_error
                options = self.plan.get("saved_model")
                self.specs[target] = load_spec(
                    target, SavedModelOptions(**options) if options else None
                )
            except Exception as error:
                self.specs[target] = error
        spec = self.specs[target]
        if isinstance(spec, Exception):
            raise spec
        policy = self.plan.get("dtype_policy")
        if policy and not getattr(spec.build_model, "_xstable_policy", None):
            spec = self.specs[target] = dataclasses.replace(
                spec, build_model=_with_dtype_policy(spec.build_model, policy))
        return spec

    def build_weights(self):
        import numpy as np

        from xstable.compare.targets import initial_weights_for

        for target, slug in self.plan["targets"]:
            path = initial_weights_path(self.weights_dir, slug)
            if os.path.exists(path) or os.path.exists(
                weights_unavailable_path(self.weights_dir, slug)
            ):
                continue
            self.events.send("start", target=target, phase="weights")
            try:
                weights = initial_weights_for(target, self.spec(target))
                tmp = f"{path}.tmp.npz"
                np.savez(tmp, **{f"w{i:05d}": np.asarray(w) for i, w in enumerate(weights)})
                os.replace(tmp, path)
                self.events.send("weights", target=target, ok=True)
            except Exception as error:
                with open(weights_unavailable_path(self.weights_dir, slug), "w") as f:
                    f.write(f"{self.backend} could not build the model: "
                            f"{type(error).__name__}: {error}\n")
                self.events.send("weights", target=target, ok=False, error=str(error))
        self.events.send("weights_done")

    def initial_weights(self, slug):
        import numpy as np

        path = initial_weights_path(self.weights_dir, slug)
        unavailable = weights_unavailable_path(self.weights_dir, slug)
        while not os.path.exists(path):
            if os.path.exists(unavailable):
                with open(unavailable) as f:
                    return None, f.read().strip()
            time.sleep(_WEIGHTS_POLL_S)
        with np.load(path, allow_pickle=False) as data:
            return [data[k] for k in sorted(data.files)], None

    def inspect(self, target, state, include_update, loss_scale=1.0):
        """Takes a step apart, on the trained model when its optimizer state can be set."""
        from xstable.compare.inspection import inspect_model, inspect_state

        recorder = self.recorders.get(target)
        model = recorder.model if recorder is not None else None
        fresh_optimizer_needed = not state["optimizer_variables"] and (
            model is not None and model.optimizer is not None and model.optimizer.built
        )
        if model is None or fresh_optimizer_needed:
            return inspect_state(self.spec(target), state, include_update, loss_scale)
        return inspect_model(model, state, include_update, loss_scale)

    def state_at(self, target, step):
        from xstable.compare.inspection import capture_state

        recorder = self.recorders.get(target)
        state = recorder.state_at(step) if recorder is not None else None
        if state is None:  # Not kept (memory budget): replay the run up to the step.
            state = capture_state(self.spec(target), self.weights.get(target), step)
        return state

    def locate_nan(self, target, step):
        """Names the stage and layer where the first non-finite value of a run appears."""
        from xstable.compare.inspection import locate_nonfinite

        onset = locate_nonfinite(self.inspect(target, self.state_at(target, step), False), step)
        if onset["stage"] == "none":  # Not in forward, loss or backward: try the update.
            onset = locate_nonfinite(self.inspect(target, self.state_at(target, step), True), step)
        if onset["stage"] == "update" and onset["step"] == step - 1:
            # The step began from non-finite weights: was it the previous step's gradient
            # or its update?
            earlier = self.inspect(target, self.state_at(target, step - 1), True)
            previous = locate_nonfinite(earlier, step - 1)
            if previous["stage"] != "none":
                onset = previous
        return onset

    def predict(self, target, slug, weights, full):
        """Writes the model's outputs and layer outputs from the initial weights; returns the path.

        `full`: predict all of `x` with `model.predict` (prediction mode); otherwise the
        first batch, eagerly (step 0 of a training comparison).
        """
        from xstable.compare.inspection import prediction_record

        spec = self.spec(target)
        x, _ = spec.make_data()
        payload = prediction_record(spec, weights, x, full)
        path = os.path.join(self.plan["predictions_dir"], f"{self.backend}-{slug}.npz")
        save_tree(path, payload)
        return path

    def run_prediction(self, target, slug):
        """Prediction mode: no training, only the outputs from the shared weights."""
        import xstable

        record = {"target": target, "backend": self.backend}
        timings = record["timings_s"] = {}
        weights, why_not = self.initial_weights(slug)
        self.events.send("start", target=target, phase="predict")
        started = time.perf_counter()
        try:
            import keras

            from xstable.compare.targets import spec_summary

            spec = self.spec(target)
            record["spec"] = spec_summary(spec)
            keras.utils.clear_session(free_memory=False)
            path = self.predict(target, slug, weights, full=True)
            record["same_initial_weights"] = weights is not None
            if why_not:
                record["initial_weights_note"] = why_not
            record["status"] = "completed"
            record["result"] = {
                "name": spec.name,
                "outcome": "predicted",
                "losses": [],
                "final_loss": None,
                "first_nonfinite_step": None,
                "device": xstable.active_device(),
                "wall_time_s": time.perf_counter() - started,
                "extra": {"prediction_path": path, "compile_mode": "model.predict"},
            }
        except Exception as error:
            record["status"] = "error"
            record["error"] = _error_record(error)
        timings["total"] = time.perf_counter() - started
        self.events.send("done", target=target, status=record["status"], record=record)

    def run_target(self, target, slug):
        import keras

        from xstable.compare.inspection import StateRecorder, locate_nonfinite
        from xstable.compare.targets import spec_summary, target_settings
        from xstable.training import run_spec

        record = {"target": target, "backend": self.backend}
        timings = record["timings_s"] = {}
        waited = time.perf_counter()
        weights, why_not = self.initial_weights(slug)
        timings["wait_for_weights"] = time.perf_counter() - waited
        self.events.send("start", target=target, phase="train")
        started = time.perf_counter()
        try:
            spec = self.spec(target)
            settings = target_settings(target)
            self.weights[target] = weights
            timings["load_spec"] = time.perf_counter() - started
            record["spec"] = spec_summary(spec)
            mode = {}
            recorder = StateRecorder(self.plan.get("state_budget_bytes", 0))
            self.recorders[target] = recorder

            scales = []

            def note_compile_mode(step, epoch, batch, model, x_batch, y_batch):
                if step == 0:
                    mode["compile_mode"] = compile_mode(model)
                    mode["dtype_policy"] = model.dtype_policy.name
                scales.append(_loss_scale(model))
                recorder(step, epoch, batch, model, x_batch, y_batch)

            prediction_path = prediction_error = None
            if weights is not None and self.plan.get("predictions_dir"):
                # Step 0: does the model predict the same from the shared weights?
                keras.utils.clear_session(free_memory=False)
                try:
                    prediction_path = self.predict(target, slug, weights, full=False)
                except Exception as error:
                    prediction_error = f"{type(error).__name__}: {error}"
            # Fresh layer-name counters, so a target's layers get the same names
            # ("dense", "dense_1", ...) in every backend's worker and in the report.
            # Without the full garbage collection clear_session does by default: it took
            # 0.4-0.5 s per target (a fifth of a JAX worker's time) and frees little, as the
            # recorders keep every trained model for the per-layer comparison anyway.
            keras.utils.clear_session(free_memory=False)
            run_started = time.perf_counter()
            result = run_spec(
                spec,
                initial_weights=weights,
                before_step=note_compile_mode,
            )
            timings["run_spec"] = time.perf_counter() - run_started
            if self.plan.get("repeat_runs"):
                # A/A: the same run again, same weights and batches, in this process. Where
                # the two part, the backend is not deterministic run to run, and a cross-backend
                # difference of that size says nothing.
                repeat_started = time.perf_counter()
                keras.utils.clear_session(free_memory=False)
                again = run_spec(spec, initial_weights=weights)
                result.extra["aa_losses"] = [float(v) for v in again.losses]
                timings["aa_run"] = time.perf_counter() - repeat_started
            if recorder.model is not None:
                scales.append(_loss_scale(recorder.model))
            result.extra["dtype_policy"] = mode.get("dtype_policy")
            result.extra["loss_scale"] = loss_scale_summary(scales)
            seeds = int(self.plan.get("seeds") or 0)
            stochastic = stochastic_layers(recorder.model) if recorder.model is not None else []
            if stochastic and seeds > 1:
                # Dropout and noise draw from this backend's own generator: step-by-step
                # identity cannot be asked, so the run is repeated with other generator seeds
                # (same weights, same batches) for a statistical comparison.
                repeat_started = time.perf_counter()
                runs = [[float(v) for v in result.losses]]
                for index in range(1, seeds):
                    keras.utils.clear_session(free_memory=False)
                    again = run_spec(
                        dataclasses.replace(spec, build_model=_reseeded(
                            spec.build_model, spec.seed + _SEED_STRIDE * index)),
                        initial_weights=weights,
                    )
                    runs.append([float(v) for v in again.losses])
                result.extra["stochastic_layers"] = stochastic
                result.extra["seed_losses"] = runs
                timings["seed_runs"] = time.perf_counter() - repeat_started
            result.extra["compile_mode"] = mode.get("compile_mode")
            if prediction_path is not None:
                result.extra["prediction_path"] = prediction_path
            if prediction_error is not None:
                result.extra["prediction_error"] = prediction_error
            if "expected" in settings:
                result.extra["expected_outcome"] = settings["expected"].get(self.backend)
            record["same_initial_weights"] = weights is not None
            if why_not:
                record["initial_weights_note"] = why_not
            overflow = (result.extra["loss_scale"] or {}).get("overflow_steps")
            if overflow and self.plan.get("locate_nan", True):
                # Where the first overflow comes from: a layer output past float16's range,
                # the loss, or a gradient (the step taken apart on this backend, unscaled).
                try:
                    state = self.state_at(target, overflow[0])
                    scale = scales[overflow[0]]
                    result.extra["overflow_onset"] = {
                        **locate_nonfinite(self.inspect(target, state, False, scale),
                                           overflow[0]),
                        "loss_scale": scale,
                    }
                except Exception as error:
                    result.extra["overflow_onset"] = {
                        "step": overflow[0], "stage": "none", "layer": None,
                        "detail": f"could not be taken apart: {type(error).__name__}: {error}",
                    }
            if result.first_nonfinite_step is not None and self.plan.get("locate_nan", True):
                located = time.perf_counter()
                try:
                    step = result.first_nonfinite_step
                    result.extra["nan_onset"] = self.locate_nan(target, step)
                except Exception as error:
                    result.extra["nan_onset_error"] = f"{type(error).__name__}: {error}"
                timings["locate_nan"] = time.perf_counter() - located
            record["status"] = "completed"
            record["result"] = result.to_dict()
        except Exception as error:
            record["status"] = "error"
            record["error"] = _error_record(error)
        timings["total"] = time.perf_counter() - started
        self.events.send("done", target=target, status=record["status"], record=record)

    def serve(self, commands):
        for line in commands:
            command = decode(line)
            if command is None:
                continue
            kind = command.get("cmd")
            if kind == "exit":
                return
            target = command.get("target")
            try:
                if kind == "capture":
                    payload = self.state_at(target, command["step"])
                elif kind == "inspect":
                    payload = self.inspect(target, load_tree(command["state_path"]), True)
                else:
                    raise ValueError(f"unknown command {kind!r}")
                save_tree(command["path"], payload)
                self.events.send(f"{kind}d" if kind == "capture" else "inspected",
                                 target=target, ok=True, path=command["path"])
            except Exception as error:
                self.events.send(
                    "captured" if kind == "capture" else "inspected",
                    target=target,
                    ok=False,
                    error=f"{type(error).__name__}: {error}",
                )


def main(argv=None):
    """Entry point of the worker process; returns its exit status."""
    parser = argparse.ArgumentParser(prog="python -m xstable.compare.worker")
    parser.add_argument("--plan", required=True, help="JSON plan written by the orchestrator")
    args = parser.parse_args(argv)
    with open(args.plan) as f:
        plan = json.load(f)
    if os.environ.get("KERAS_BACKEND") != plan["backend"]:
        print(
            f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r} does not match the plan's "
            f"backend {plan['backend']!r}.",
            file=sys.stderr,
        )
        return 2
    _die_with_parent(plan.get("parent_pid"))
    events = _Events(_redirect_stdout_to_stderr())
    for path in plan.get("sys_path", []):
        if path not in sys.path:
            sys.path.insert(0, path)

    import xstable

    xstable.disable_tf32()
    if plan.get("device") == "gpu" and xstable.active_device() == "cpu":
        print(f"{NO_GPU_MARKER}: {xstable.active_backend()} sees no GPU", file=sys.stderr)
        return 3
    events.send(
        "ready",
        backend=xstable.active_backend(),
        device=xstable.active_device(),
        versions=xstable.library_versions(),
        pid=os.getpid(),
        python=sys.executable,
    )
    if plan.get("compilation_cache_dir"):
        from xstable.backend import share_compiled_programs

        share_compiled_programs(plan["compilation_cache_dir"])
    worker = _Worker(plan, events)
    worker.import_modules()
    if plan.get("build_weights"):
        worker.build_weights()
    for target, slug in plan["targets"]:
        if plan.get("mode") == "predict":
            worker.run_prediction(target, slug)
        else:
            worker.run_target(target, slug)
    cache = plan.get("compilation_cache_dir")
    if cache and os.path.isdir(cache):
        print(f"xstable-compare: compiled programs shared in this run: {len(os.listdir(cache))}",
              file=sys.stderr)
    events.send("trained")
    worker.serve(sys.stdin)
    return 0


if __name__ == "__main__":
    status = main()
    # Everything is written and flushed by now. Skipping the interpreter's teardown (module
    # and backend finalizers, every kept model) saves the orchestrator seconds of waiting.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

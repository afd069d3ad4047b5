"""`compare()`: train targets on several backends and report where they part ways."""

import dataclasses
import io
import math
import os
import sys
import tempfile
import time

from xstable._version import __version__
from xstable.compare import report as report_module
from xstable.compare.divergence import (
    localize_divergence,
    loss_divergence,
    prediction_parity,
    stochastic_comparison,
)
from xstable.compare.exchange import load_tree
from xstable.compare.findings import DEFAULT_FAIL_ON, exit_status, parse_fail_on
from xstable.compare.orchestrator import (
    BACKENDS,
    DEVICES,
    BackendRuns,
    RunPlan,
    close_workers,
    inspect_step,
    kill_workers,
    release_workers,
    run_backends,
)
from xstable.compare.output import OutputFolder
from xstable.compare.plots import MATPLOTLIB_MISSING, LossPlotter, matplotlib_available
from xstable.compare.report_schema import SCHEMA_VERSION
from xstable.compare.signals import (
    INTERRUPTS,
    exit_status_for,
    interrupt_signal,
    signals_ignored,
)
from xstable.compare.targets import (
    SavedModelOptions,
    check_target_resolvable,
    default_targets,
    expand_targets,
    is_saved_model_target,
    load_data_file,
    target_slug,
)
from xstable.compare.tolerances import DEFAULT_TOLERANCES, Tolerances

__all__ = ["compare", "DTYPE_POLICIES"]

DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def _check_arguments(targets, backends, device, jobs, timeout_s, tolerances):
    if isinstance(targets, str) or not all(isinstance(t, str) and t for t in targets):
        raise TypeError(
            "`targets` must be a list of non-empty strings (`module:function` or scenario "
            f"ids). Received: targets={targets!r}."
        )
    if len(set(targets)) != len(targets):
        raise ValueError(f"`targets` lists a target twice. Received: targets={targets!r}.")
    if not backends or any(b not in BACKENDS for b in backends) or len(set(backends)) != len(
        backends
    ):
        raise ValueError(
            f"`backends` must be distinct names from {list(BACKENDS)}. "
            f"Received: backends={backends!r}."
        )
    if device not in DEVICES:
        raise ValueError(f"`device` must be one of {list(DEVICES)}. Received: device={device!r}.")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"`jobs` must be a positive integer. Received: jobs={jobs!r}.")
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"`timeout_s` must be a positive number. Received: timeout_s={timeout_s!r}.")
    if not isinstance(tolerances, Tolerances):
        raise TypeError(
            "`tolerances` must be an `xstable.compare.Tolerances`. "
            f"Received: tolerances of type {type(tolerances).__name__}."
        )


def _check_python(python, backends):
    python = dict(python or {})
    for backend, path in python.items():
        if backend not in backends:
            raise ValueError(
                f"`python` names a backend that is not compared: {backend!r} (compared: "
                f"{list(backends)}). Received: python={python!r}."
            )
        if not (isinstance(path, str) and os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ValueError(
                f"`python` for {backend} must be the path of an executable Python "
                f"interpreter. Received: python={python!r}."
            )
        python[backend] = os.path.abspath(path)
    return python


def _clean(value):
    """Makes a value strict-JSON: non-finite floats become "nan"/"inf"/"-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _as_float(value):
    return float(value) if value is not None else math.nan


def _backend_status(records, targets, interrupted):
    statuses = {r["status"] for r in records.values()}
    if interrupted and len(records) < len(targets):
        return "interrupted"
    if statuses == {"completed"}:
        return "ok"
    if statuses == {"unavailable"}:
        return "unavailable"
    if "completed" in statuses:
        return "partial"
    return "failed"


def compare(
    targets=None,
    backends=BACKENDS,
    out_dir="reports/compare",
    device="cpu",
    reference=None,
    tolerances=DEFAULT_TOLERANCES,
    timeout_s=300.0,
    startup_timeout_s=300.0,
    jobs=None,
    fail_on=DEFAULT_FAIL_ON,
    plots=True,
    locate=True,
    env=None,
    progress=sys.stderr,
    noise_floor=False,
    python=None,
    mode="train",
    data=None,
    epochs=1,
    batch_size=32,
    imports=(),
    seeds=5,
    dtype_policy=None,
):
    """Trains each target on each backend from the same weights and batches, and compares.

    Every backend runs in its own subprocess (Keras fixes its backend at import). The reference
    backend builds each target's initial weights once; every backend loads them and trains
    with the same pinned batch order, one `train_on_batch` per step, TF32 off. The per-step
    losses are compared with the reference; at the first step past the tolerance the step is
    replayed from the reference's state on every backend and taken apart layer by layer to
    name the layer, loss or update where the backends part ways. A run that hits NaN is
    replayed on its own backend to name the stage and layer of the NaN onset.

    Args:
        targets: list of str, `module:function` / `file.py:function` specs or seed scenario
            ids; `None` for every seed scenario.
        backends: list of backend names to run.
        out_dir: str, folder for `report.md`, `report.json`, plots, per-backend results
            (`runs/<backend>/`) and worker logs (`logs/`).
        device: `"cpu"` or `"gpu"`.
        reference: backend the others are compared with (default: the first of `backends`).
        tolerances: `Tolerances` deciding what counts as a divergence.
        timeout_s: float, seconds one target may take on one backend before its worker is
            killed (the other targets and backends go on).
        startup_timeout_s: float, seconds a worker may take to import its backend.
        jobs: int, workers training at once (default: all backends; on a shared or small
            machine all at once still finishes first, as no worker waits for a slot).
        fail_on: finding kinds that make the exit status 1 (see `parse_fail_on`).
        plots: bool, write PNG loss curves (needs matplotlib).
        locate: bool, take divergent and NaN steps apart layer by layer.
        env: dict of extra environment variables for the workers.
        progress: text stream for progress lines, or `None`.
        noise_floor: bool, train every target twice on the reference backend (A/A) and
            report how far the two identical runs part: the run-to-run noise under which a
            cross-backend difference means nothing. Doubles the reference's training time.
        python: dict backend -> path of the Python interpreter that runs that backend's
            worker (e.g. a virtual environment with another TensorFlow); default: this
            process's interpreter. The worker imports this process's xstable.
        mode: `"train"` (default): the predictions from the shared initial weights are
            compared on the first batch (step 0), then the training runs; `"predict"`: only
            the predictions, on all of the data (`model.predict`), with per output the
            largest absolute and relative deviation and the first layer that differs.
        data: str, `.npz` file with the arrays `x` and `y` (`x` alone for `mode="predict"`)
            for saved-model targets (`path/model.keras`); read with `allow_pickle=False`.
        epochs: int, passes over `data` when a saved-model target trains.
        batch_size: int, rows per step (and per prediction batch) of a saved-model target.
        imports: list of module names every worker imports first, e.g. the module that
            registers a saved model's custom layers (`keras.saving.register_keras_serializable`).
        seeds: int, runs per backend (generator seeds) of a target whose model has dropout
            or noise layers, compared statistically instead of step by step (`1`: no
            repeats; such a target is then compared step by step like any other).
        dtype_policy: `"mixed_float16"`, `"mixed_bfloat16"` or `"float32"`: the global Keras
            dtype policy the models are built under on every backend (`None`: Keras's
            default). Under `mixed_float16` Keras wraps the optimizer in a
            `LossScaleOptimizer`; the report gives each backend's loss scale and the steps
            whose gradients overflowed, besides where NaNs appear. A saved model keeps the
            policy it was saved with.

    Returns:
        The report dict (also written to `out_dir/report.json`); `report["summary"]
        ["exit_status"]` is the exit status under `fail_on`.

    Raises:
        TypeError: If `targets` or `tolerances` has the wrong type.
        ValueError: If a backend, device, `jobs`, `timeout_s` or `fail_on` value is invalid,
            a target cannot be found, or `out_dir` cannot be used
            (`xstable.compare.output.OutputFolderError`: not a directory, not writable, or
            owned by another user).
        RuntimeError: If `targets` is `None` and the seed scenarios are not installed.
        KeyboardInterrupt: On SIGINT, after the workers are killed and a partial report
            (`"status": "interrupted"`) is written; likewise
            `xstable.compare.signals.Terminated` on SIGTERM where the caller made SIGTERM
            raise it (`xstable compare` does).

    Safety: workers exchange data with this process only as JSON and `.npz` (no pickle) in a
    private temporary folder (mode 0700, outside `out_dir`, removed at the end); every file
    under `out_dir` is written atomically by this process without following symlinks.

    Example:

    ```python
    report = xstable.compare.compare(["my_project.specs:small_mlp"], out_dir="reports/mlp")
    print(report["summary"])
    ```
    """
    started = time.monotonic()
    fail_on = parse_fail_on(fail_on)
    if isinstance(targets, str):
        raise TypeError(
            "`targets` must be a list of strings, not one string. "
            f"Received: targets={targets!r}; pass [{targets!r}]."
        )
    targets = default_targets() if targets is None else list(targets)
    if all(isinstance(t, str) and t for t in targets):
        targets = expand_targets(targets)
    backends = list(backends)
    reference = backends[0] if reference is None else reference
    if jobs is None:
        jobs = len(backends)
    _check_arguments(targets, backends, device, jobs, timeout_s, tolerances)
    if reference not in backends:
        raise ValueError(
            f"`reference` must be one of the compared backends {backends}. "
            f"Received: reference={reference!r}."
        )
    backends = [reference] + [b for b in backends if b != reference]
    python = _check_python(python, backends)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"`seeds` must be a positive integer. Received: seeds={seeds!r}.")
    if dtype_policy not in (None, *DTYPE_POLICIES):
        raise ValueError(f"`dtype_policy` must be one of {list(DTYPE_POLICIES)} or None. "
                         f"Received: dtype_policy={dtype_policy!r}.")
    if mode not in ("train", "predict"):
        raise ValueError(f"`mode` must be 'train' or 'predict'. Received: mode={mode!r}.")
    if isinstance(imports, str) or not all(isinstance(m, str) and m for m in imports):
        raise TypeError(f"`imports` must be a list of module names. Received: imports={imports!r}.")
    saved_model = None
    if any(is_saved_model_target(t) for t in targets):
        if data is None:
            load_data_file(None)  # raises the error that names `--data`
        data = os.path.abspath(data)
        load_data_file(data, need_y=(mode == "train"))
        saved_model = SavedModelOptions(data=data, epochs=epochs, batch_size=batch_size)
    for target in targets:
        check_target_resolvable(target)
    output = OutputFolder(out_dir)
    out_dir = output.path
    plan = RunPlan(
        targets=targets,
        backends=backends,
        out_dir=out_dir,
        device=device,
        target_timeout_s=float(timeout_s),
        startup_timeout_s=float(startup_timeout_s),
        jobs=jobs,
        env=dict(env or {}),
        locate_nan=locate,
        noise_floor=bool(noise_floor),
        python=python,
        mode=mode,
        saved_model=saved_model.to_dict() if saved_model else None,
        imports=list(imports),
        seeds=seeds,
        dtype_policy=dtype_policy,
    )
    if mode == "predict":
        plots = False  # nothing trains: no loss curves
    plots_note = None
    drawer = None
    if plots:
        if matplotlib_available():
            drawer = _PlotsAsTargetsFinish(output)
        else:
            plots_note = MATPLOTLIB_MISSING
            if progress is not None:
                progress.write(MATPLOTLIB_MISSING + "\n")

    def plot_finished_target(target, runs):
        # The plot needs only the loss curves and where they part, not the per-layer
        # comparison, so it is drawn while the slowest backend still trains.
        drawer.plot(_target_report(target, runs, {}, plan, reference, tolerances, False, None))

    runs, workers, report = {}, {}, None
    private = tempfile.TemporaryDirectory(prefix="xstable-compare-", ignore_cleanup_errors=True)
    plan.work_dir = private.name  # mkdtemp: mode 0700, only this user can read or plant files.
    try:
        try:
            _, workers, say = run_backends(
                plan, progress, plot_finished_target if drawer is not None else None,
                output=output, runs=runs,
            )
            try:
                target_reports = [
                    _target_report(target, runs, workers, plan, reference, tolerances, locate,
                                   say)
                    for target in targets
                ]
            finally:
                release_workers(workers)  # They wind down while the report is written.
            if drawer is not None:
                for entry in target_reports:
                    entry["plot"] = drawer.plot(entry)
            report = _write(target_reports, runs, plan, reference, tolerances, fail_on,
                            plots_note, started, output,
                            images=drawer.images if drawer is not None else None)
            close_workers(workers)
        except INTERRUPTS as interrupt:
            with signals_ignored():  # A second Ctrl-C must not cut the partial report short.
                kill_workers(workers)
                if report is None:
                    _write_interrupted(runs, plan, reference, tolerances, fail_on, plots_note,
                                       started, output, drawer, interrupt, progress)
            if report is None:
                raise
            # The report was complete; only the workers' exit was cut short (now killed).
        except BaseException:
            kill_workers(workers)
            raise
    finally:
        if drawer is not None:
            drawer.close()
        output.close()
        private.cleanup()
    if progress is not None:
        # The time printed is the whole run, the workers' exit included (the report's
        # `wall_time_s` ends when the report is assembled).
        progress.write(
            f"compare: {len(targets)} targets x {len(backends)} backends in "
            f"{time.monotonic() - started:.1f}s; findings "
            f"{report['summary']['findings'] or 'none'}; report in "
            f"{os.path.join(out_dir, 'report.md')}\n"
        )
        progress.flush()
    return report


def _write_interrupted(runs, plan, reference, tolerances, fail_on, plots_note, started, output,
                       drawer, interrupt, progress):
    """Writes the report of what finished before SIGINT or SIGTERM ended the run."""
    signal_name = interrupt_signal(interrupt).name
    for backend in plan.backends:  # The interrupt may come before a backend was set up.
        runs.setdefault(backend, BackendRuns(backend, {}))
    missing = f"the run was interrupted ({signal_name}) before this target finished"
    target_reports = []
    for target in plan.targets:
        entry = _target_report(target, runs, {}, plan, reference, tolerances, False, None,
                               missing=missing)
        if drawer is not None:
            entry["plot"] = drawer.paths.get(target)
        target_reports.append(entry)
    _write(target_reports, runs, plan, reference, tolerances, fail_on, plots_note, started,
           output, interrupted=signal_name, status_override=exit_status_for(interrupt),
           images=drawer.images if drawer is not None else None)
    if progress is not None:
        progress.write(
            f"compare: interrupted by {signal_name}; workers stopped; partial report in "
            f"{output.join('report.md')}\n"
        )
        progress.flush()


class _PlotsAsTargetsFinish:
    """Draws each target's loss plot once, on one reused figure created at the first plot."""

    def __init__(self, output):
        self.output = output
        self.paths = {}
        self.images = {}
        self._plotter = None

    def plot(self, entry):
        target = entry["target"]
        if target not in self.paths:
            if self._plotter is None:
                self._plotter = LossPlotter().__enter__()
            self.paths[target] = _plot(self._plotter, entry, self.output, self.images)
        return self.paths[target]

    def close(self):
        if self._plotter is not None:
            self._plotter.__exit__(None, None, None)
            self._plotter = None


def _initial_weights_note(builder, target_reports):
    unshared = sorted(
        t["target"] for t in target_reports
        if any(r["status"] == "completed" and r["same_initial_weights"] is False
               for r in t["runs"].values())
    )
    note = f"built once on {builder or 'no backend'} and loaded everywhere"
    if unshared:
        note += (
            f", except for {len(unshared)} target(s) whose weights could not be built there "
            f"({', '.join(unshared)}): not compared"
        )
    return note


def _write(target_reports, runs, plan, reference, tolerances, fail_on, plots_note, started,
           output, interrupted=None, status_override=None, images=None):
    """Assembles the report dict, writes report.json and report.md, and returns the dict."""
    backends, device = plan.backends, plan.device
    timeout_s = plan.target_timeout_s
    findings = [f for entry in target_reports for f in entry["findings"]]
    counts = {}
    for finding in findings:
        counts[finding["kind"]] = counts.get(finding["kind"], 0) + 1
    builder = plan.backends[0] if runs[plan.backends[0]].ready is not None else None
    report = {
        "schema_version": SCHEMA_VERSION,
        "xstable_version": __version__,
        "status": "interrupted" if interrupted else "complete",
        "settings": {
            "backends": backends,
            "reference": reference,
            "device": device,
            "tolerances": dataclasses.asdict(tolerances),
            "target_timeout_s": float(timeout_s),
            "tf32": "off",
            "batch_order": "pinned by NumPy (xstable.training.batch_order), same on every backend",
            "initial_weights": _initial_weights_note(builder, target_reports),
            "python": dict(plan.python),
            "mode": plan.mode,
            "saved_model": plan.saved_model,
            "seeds": plan.seeds,
            "dtype_policy": plan.dtype_policy,
        },
        "backends": {
            b: {
                "status": _backend_status(runs[b].records, plan.targets, interrupted),
                "versions": (runs[b].ready or {}).get("versions"),
                "device": (runs[b].ready or {}).get("device"),
                "restarts": runs[b].restarts,
                "python": (runs[b].ready or {}).get("python") or plan.interpreter(b),
                "wall_time_s": runs[b].wall_time_s,
                "log": runs[b].log_path,
            }
            for b in backends
        },
        "targets": target_reports,
        "summary": {
            "findings": counts,
            "fail_on": list(fail_on),
            "exit_status": exit_status(findings, fail_on) if status_override is None
            else status_override,
            "wall_time_s": time.monotonic() - started,
            "plots": plots_note,
        },
    }
    if interrupted:
        report["summary"]["interrupted"] = interrupted
    report = _clean(report)
    report_module.write_report(report, output, images)
    return report


def _target_report(target, runs, workers, plan, reference, tolerances, locate, say,
                   missing=None):
    records = {b: runs[b].records.get(target) if b in runs else None for b in plan.backends}
    run_entries = {}
    name = description = None
    for backend, record in records.items():
        if record is None and missing is not None:
            record = {"status": "interrupted", "error": {"type": "interrupted",
                                                         "message": missing}}
        elif record is None:
            record = {"status": "crashed", "error": {"type": "crashed",
                                                     "message": "no result was recorded"}}
        if record["status"] == "completed":
            name = name or record["result"]["name"]
            description = description or record.get("spec", {}).get("description")
            record = {**record, "path": os.path.join(
                plan.out_dir, "runs", backend, f"{target_slug(target)}.json")}
        run_entries[backend] = report_module.run_summary(record)

    divergence = {}
    not_compared = {}
    stochastic = {}
    noise_floor = None
    reference_run = run_entries[reference]
    if reference_run["status"] == "completed":
        ref_losses = [_as_float(v) for v in records[reference]["result"]["losses"]]
        repeated = records[reference]["result"]["extra"].get("aa_losses")
        if repeated is not None:
            aa = loss_divergence(ref_losses, [_as_float(v) for v in repeated], tolerances)
            noise_floor = {
                "backend": reference,
                "compared_steps": aa["compared_steps"],
                "max_relative_deviation": aa["max_relative_deviation"],
                "first_divergent_step": aa["first_divergent_step"],
            }
        for backend, run in run_entries.items():
            if backend == reference or run["status"] != "completed":
                continue
            if not (reference_run["same_initial_weights"] and run["same_initial_weights"]):
                # Different starting points: a loss difference says nothing about the backends.
                note = (records[backend].get("initial_weights_note")
                        or records[reference].get("initial_weights_note") or "unknown reason")
                not_compared[backend] = (
                    f"not compared with {reference}: the runs did not start from shared "
                    f"initial weights ({note})"
                )
                continue
            ref_seeds = records[reference]["result"]["extra"].get("seed_losses")
            seed_losses = records[backend]["result"]["extra"].get("seed_losses")
            if ref_seeds and seed_losses:
                # Dropout/noise: each backend draws from its own generator, so the runs are
                # compared as samples, not step by step.
                stochastic[backend] = {
                    **stochastic_comparison(
                        [[_as_float(v) for v in r] for r in ref_seeds],
                        [[_as_float(v) for v in r] for r in seed_losses],
                    ),
                    "layers": records[reference]["result"]["extra"].get("stochastic_layers"),
                }
                continue
            losses = [_as_float(v) for v in records[backend]["result"]["losses"]]
            divergence[backend] = loss_divergence(ref_losses, losses, tolerances)

    prediction, prediction_errors = _prediction_parity(records, reference, tolerances, plan,
                                                       target)

    localization = None
    steps = [d["first_divergent_step"] for d in divergence.values()
             if d["first_divergent_step"] is not None]
    if steps and locate:
        step = _step_to_inspect(min(steps), run_entries)
        say(reference, f"{target}: taking step {step} apart on every backend")
        work_dir = os.path.join(plan.exchange_dir, "inspect")
        os.makedirs(work_dir, mode=0o700, exist_ok=True)
        live = {b: w for b, w in workers.items() if b in divergence or b == reference}
        # Inspection compiles a fresh function per backend: never less time than a minute.
        inspections, errors = inspect_step(
            live, reference, target, step, work_dir, max(plan.target_timeout_s, 60.0)
        )
        located = {}
        if reference in inspections:
            for backend, inspection in inspections.items():
                if backend != reference:
                    located[backend] = localize_divergence(
                        inspections[reference], inspection, tolerances
                    )
        # A backend that parts later than the first one is also taken apart at its own step:
        # agreeing at the earlier step says nothing about its own divergence.
        later = {}
        for backend, div in divergence.items():
            own = div["first_divergent_step"]
            if own is not None and backend in located:
                own = _step_to_inspect(own, run_entries)
                if own != step:
                    later.setdefault(own, []).append(backend)
        for own_step, backends in sorted(later.items()):
            say(reference, f"{target}: taking step {own_step} apart for {', '.join(backends)}")
            subset = {b: w for b, w in workers.items() if b in backends or b == reference}
            own_inspections, own_errors = inspect_step(
                subset, reference, target, own_step, work_dir, max(plan.target_timeout_s, 60.0)
            )
            errors.update(own_errors)
            for backend in backends:
                if reference in own_inspections and backend in own_inspections:
                    located[backend] = {
                        **localize_divergence(
                            own_inspections[reference], own_inspections[backend], tolerances
                        ),
                        "step": own_step,
                    }
                else:
                    located.pop(backend, None)
        localization = {
            "step": step,
            "reference": reference,
            "backends": located,
            "errors": {b: str(e) for b, e in errors.items()},
        }
    findings = report_module.target_findings(run_entries, divergence, reference, localization,
                                             not_compared, prediction, stochastic)
    return {
        "target": target,
        "name": name,
        "description": description,
        "runs": run_entries,
        "divergence": divergence,
        "not_compared": not_compared,
        "prediction": prediction,
        "prediction_errors": prediction_errors,
        "stochastic": stochastic,
        "noise_floor": noise_floor,
        "localization": localization,
        "findings": findings,
        "plot": None,
    }


def _prediction_parity(records, reference, tolerances, plan, target):
    """Per backend, the prediction parity with the reference (from the workers' `.npz` files).

    The files are read only at the place this process chose for them in the private exchange
    folder (a path in a worker's message is not followed), as data (`allow_pickle=False`).
    """
    def prediction_of(backend, record):
        if not record or record.get("status") != "completed":
            return None, None
        extra = record["result"].get("extra") or {}
        if extra.get("prediction_error"):
            return None, extra["prediction_error"]
        if not extra.get("prediction_path") or not record.get("same_initial_weights"):
            return None, None
        path = os.path.join(plan.exchange_dir, "predictions",
                            f"{backend}-{target_slug(target)}.npz")
        try:
            return load_tree(path), None
        except Exception as error:  # A damaged or substituted file: refused, reported.
            return None, f"{path} could not be read as data ({type(error).__name__}: {error})"

    parity, errors = {}, {}
    ref, ref_error = prediction_of(reference, records.get(reference))
    if ref_error:
        errors[reference] = ref_error
    for backend, record in records.items():
        if backend == reference:
            continue
        other, error = prediction_of(backend, record)
        if error:
            errors[backend] = error
        elif ref is not None and other is not None:
            parity[backend] = prediction_parity(ref, other, tolerances)
    return parity, errors


def _step_to_inspect(step, run_entries):
    """The divergent step, or the one before when a NaN there came from that step's update.

    A run whose update at step k-1 overflowed starts step k from non-finite weights; taking
    step k apart from that state shows every backend failing alike, while step k-1 shows the
    update that parted them.
    """
    for run in run_entries.values():
        onset = run.get("nan_onset") or {}
        if step > 0 and onset.get("stage") == "update" and onset.get("step") == step - 1:
            return step - 1
    return step


def _plot(plotter, entry, output, images=None):
    curves = {
        backend: ([_as_float(v) if not isinstance(v, str) else float(v) for v in run["losses"]],
                  run["first_nonfinite_step"])
        for backend, run in entry["runs"].items()
        if run["status"] == "completed"
    }
    if not curves:
        return None
    steps = [d["first_divergent_step"] for d in entry["divergence"].values()
             if d["first_divergent_step"] is not None]
    relative = f"plots/{target_slug(entry['target'])}.png"
    png = io.BytesIO()
    # The runs are in backend order, the reference first.
    plotter.plot(entry["target"], curves, png, min(steps) if steps else None,
                 reference=next(iter(entry["runs"])))
    output.write_bytes(relative, png.getvalue())
    if images is not None:
        images[entry["target"]] = png.getvalue()
    return relative

"""Runs one worker process per backend, with timeouts and fault isolation.

Each backend trains every target in one subprocess (`python -m xstable.compare.worker`), so the
backend's import is paid once. A target that hangs past `target_timeout_s`, or a process that
crashes, costs only that target on that backend: the worker is killed and restarted for the
remaining targets. A backend that is not installed, or whose process dies before it is ready,
is reported as such for every target. Everything else is kept.

Nothing the workers exchange with this process can run code when read: events and results
travel as JSON lines over the workers' pipes; plans, initial weights, states and inspections
are JSON or `.npz` files (`allow_pickle=False`) in a private folder (mode 0700, outside the
report folder) that the caller creates and removes. Only this process writes into the report
folder, through `OutputFolder` (no symlink followed).
"""

import dataclasses
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from xstable.compare.exchange import load_tree
from xstable.compare.output import OutputFolder
from xstable.compare.protocol import (
    decode,
    encode,
    initial_weights_path,
    weights_unavailable_path,
)
from xstable.compare.targets import target_slug

__all__ = [
    "BACKENDS",
    "DEVICES",
    "RunPlan",
    "BackendRuns",
    "close_workers",
    "inspect_step",
    "kill_workers",
    "release_workers",
    "run_backends",
    "worker_env",
]

BACKENDS = ("tensorflow", "torch", "jax")
DEVICES = ("cpu", "gpu")
_BACKEND_MODULES = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}
_LOG_TAIL_CHARS = 3000


@dataclasses.dataclass
class RunPlan:
    """What to run where.

    Args:
        targets: list of target strings.
        backends: list of backend names; the first is the reference and builds the initial
            weights.
        out_dir: folder for results, logs and the report.
        work_dir: private folder (mode 0700, outside `out_dir`) for the plans, initial
            weights, states and inspections the processes exchange; `None` means
            `out_dir/work` (tests of the bookkeeping only).
        device: `"cpu"` (GPUs hidden from the workers) or `"gpu"`.
        target_timeout_s: seconds one target may take on one backend (training plus NaN
            location) before its worker is killed.
        startup_timeout_s: seconds a worker may take to import its backend.
        jobs: how many workers train at the same time.
        env: extra environment variables for every worker.
        locate_nan: whether workers locate the stage and layer of a NaN onset.
        state_budget_bytes: memory per target the reference worker may use to keep the state
            of every step (past it, the per-layer comparison replays the run instead).
        share_compiled_programs: let a worker reuse a compiled program that an earlier target
            of the same run compiled (JAX's compilation cache, in `work_dir`).
        noise_floor: the reference trains each target a second time (A/A) to measure how far
            two identical runs on it part.
        python: dict backend -> Python interpreter that runs that backend's worker (default:
            this process's interpreter); it imports this process's xstable.
        mode: `"train"` (train and compare the losses; the predictions from the initial
            weights are compared first, on the first batch) or `"predict"` (only the
            predictions on all of the data).
        saved_model: `SavedModelOptions.to_dict()` for `.keras` targets, or `None`.
        imports: modules every worker imports first (custom layers of saved models).
        seeds: runs per backend of a target with dropout or noise layers (generator seeds),
            compared statistically.
        dtype_policy: global Keras dtype policy every worker builds the models under
            (`"mixed_float16"`, `"mixed_bfloat16"`, `"float32"`), or `None` (Keras's default).
    """

    targets: list
    backends: list
    out_dir: str
    device: str = "cpu"
    target_timeout_s: float = 300.0
    startup_timeout_s: float = 300.0
    jobs: int = 2
    env: dict = dataclasses.field(default_factory=dict)
    locate_nan: bool = True
    state_budget_bytes: int = 64 * 2**20
    share_compiled_programs: bool = True
    work_dir: str | None = None
    noise_floor: bool = False
    python: dict = dataclasses.field(default_factory=dict)
    mode: str = "train"
    saved_model: dict | None = None
    imports: list = dataclasses.field(default_factory=list)
    seeds: int = 5
    dtype_policy: str | None = None

    def interpreter(self, backend):
        """The Python interpreter that runs `backend`'s worker."""
        return self.python.get(backend) or sys.executable

    @property
    def exchange_dir(self):
        """The folder for files only the processes of this run read."""
        return self.work_dir or os.path.join(self.out_dir, "work")


@dataclasses.dataclass
class BackendRuns:
    """What the workers of one backend produced.

    Attributes:
        backend: Backend name.
        records: dict target -> record (the worker's result JSON, or a record with `status`
            `"crashed"`, `"timeout"` or `"unavailable"` and an `error`).
        ready: The worker's `ready` event (versions, device), or `None` if it never started.
        restarts: How many times the worker was restarted after a crash or timeout.
        wall_time_s: Seconds from the first start to the last target.
        log_path: The worker's stderr log.
    """

    backend: str
    records: dict
    ready: dict | None = None
    restarts: int = 0
    wall_time_s: float = 0.0
    log_path: str = ""


def _read_events(stream, events):
    for line in stream:
        message = decode(line)
        if message is not None:
            events.put(message)
    events.put({"event": "_eof"})


def _looks_like_missing_backend(log_tail, backend):
    module = _BACKEND_MODULES[backend]
    return (
        f"No module named '{module}" in log_tail
        or (f"import {module}" in log_tail and "ImportError" in log_tail)
    )


def worker_env(plan, backend):
    """Returns the environment variables of a worker process of `backend`.

    Args:
        plan: `RunPlan`.
        backend: backend name.

    Returns:
        A dict: this process's environment, `plan.env`, `KERAS_BACKEND` and the settings
        every worker gets (GPUs hidden for `device="cpu"`, quiet TensorFlow logs, OpenMP
        threads that wait passively, unbuffered output). A worker run by another interpreter
        (`plan.python`) gets this xstable first on `PYTHONPATH`, so both sides speak the same
        protocol.
    """
    env = {**os.environ, **plan.env, "KERAS_BACKEND": backend}
    if plan.python.get(backend):
        import xstable

        package_root = os.path.dirname(os.path.dirname(os.path.abspath(xstable.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH")) if p
        )
    if plan.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Workers share the cores. OpenMP threads (PyTorch's CPU kernels) otherwise spin
    # while they wait for work, burning the time another worker needs: on 2 cores this
    # halved the CPU time of the torch worker over the seed scenarios. Waiting passively
    # changes no result (the work is split among the same threads).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Worker:
    """One live worker process of a backend and what it is doing."""

    def __init__(self, plan, backend, targets, build_weights, log, progress):
        self.backend = backend
        self.targets = list(targets)
        self.pending = list(targets)
        self.current = None
        self.current_since = None
        self.ready = None
        self.trained = False
        self.finished = False
        self.started = time.monotonic()
        self.progress = progress
        self.events = queue.Queue()
        self.weights_done = not build_weights
        plan_path = os.path.join(plan.exchange_dir, f"plan-{backend}-{os.getpid()}-"
                                 f"{int(time.time() * 1e6)}.json")
        with open(plan_path, "w") as f:
            json.dump(
                {
                    "backend": backend,
                    "device": plan.device,
                    "targets": [[t, target_slug(t)] for t in targets],
                    "build_weights": build_weights,
                    "weights_dir": os.path.join(plan.exchange_dir, "weights"),
                    "parent_pid": os.getpid(),
                    "repeat_runs": plan.noise_floor and backend == plan.backends[0],
                    "locate_nan": plan.locate_nan,
                    # The reference keeps every step's state for the per-layer comparison;
                    # the others need only the latest (for locating a NaN).
                    "state_budget_bytes": plan.state_budget_bytes if backend == plan.backends[0]
                    else 0,
                    "sys_path": [os.getcwd()],
                    "mode": plan.mode,
                    "predictions_dir": os.path.join(plan.exchange_dir, "predictions"),
                    "saved_model": plan.saved_model,
                    "imports": list(plan.imports),
                    "seeds": plan.seeds,
                    "dtype_policy": plan.dtype_policy,
                    "compilation_cache_dir": os.path.join(
                        plan.exchange_dir, f"compiled-{backend}"
                    ) if plan.share_compiled_programs else None,
                },
                f,
            )
        env = worker_env(plan, backend)
        log.write(f"\n===== worker start {time.strftime('%H:%M:%S')} targets={targets}\n"
                  .encode())
        # Its own session and process group: a terminal's Ctrl-C reaches only this process,
        # which then kills the whole group (the worker and anything a spec started).
        self.process = subprocess.Popen(
            [plan.interpreter(backend), "-m", "xstable.compare.worker", "--plan", plan_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(
            target=_read_events, args=(self.process.stdout, self.events), daemon=True
        )
        self.reader.start()

    def send(self, command):
        try:
            self.process.stdin.write(encode(command))
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def kill(self):
        """Kills the worker's process group (also what a spec started) and reaps the worker."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self.finished = True

    def release(self):
        """Asks the worker to exit; does not wait."""
        if self.process.poll() is None and not self.process.stdin.closed:
            self.send({"cmd": "exit"})
            try:
                self.process.stdin.close()
            except OSError:
                pass

    def close(self, timeout=30.0):
        if self.process.poll() is None:
            self.release()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.finished = True


def _backend_installed(backend):
    return importlib.util.find_spec(_BACKEND_MODULES[backend]) is not None


def _failure_record(target, backend, status, message, log_tail=""):
    return {
        "target": target,
        "backend": backend,
        "status": status,
        "error": {"type": status, "message": message, "traceback": log_tail},
    }


class _Progress:
    def __init__(self, stream, total):
        self.stream = stream
        self.total = total
        self.done = 0
        self.start = time.monotonic()

    def __call__(self, backend, message, count=False):
        if count:
            self.done += 1
        if self.stream is None:
            return
        elapsed = time.monotonic() - self.start
        self.stream.write(
            f"[{elapsed:6.1f}s {self.done:3d}/{self.total}] {backend:<10} {message}\n"
        )
        self.stream.flush()


class _Runner:
    def __init__(self, plan, progress_stream, on_target_done=None, output=None, runs=None):
        self.plan = plan
        self.on_target_done = on_target_done
        self.output = output if output is not None else OutputFolder(plan.out_dir)
        os.makedirs(os.path.join(plan.exchange_dir, "weights"), mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(plan.exchange_dir, "predictions"), mode=0o700, exist_ok=True)
        self.progress = _Progress(progress_stream, len(plan.targets) * len(plan.backends))
        self.runs = runs if runs is not None else {}
        self.runs.update({
            b: BackendRuns(b, {}, log_path=self.output.join(f"logs/{b}.log"))
            for b in plan.backends
        })
        self.logs = {}
        self.all_workers = []
        self.workers = {}
        self.waiting = []
        self.builder = None
        self.first_start = {}

    def _record(self, backend, target, record):
        self.runs[backend].records[target] = record
        self._print_progress(backend, target, record)
        if self.on_target_done is not None and all(
            target in self.runs[b].records for b in self.plan.backends
        ):
            self.on_target_done(target, self.runs)

    def _print_progress(self, backend, target, record):
        status = record["status"]
        if status == "completed":
            result = record["result"]
            detail = f"{result['outcome']}"
            if result["first_nonfinite_step"] is not None:
                detail += f" at step {result['first_nonfinite_step']}"
            if result["outcome"] == "predicted":
                detail += f"; {record['timings_s']['total']:.1f}s"
            else:
                detail += (
                    f", {len(result['losses'])} steps; {record['timings_s']['total']:.1f}s "
                    f"(training {result['wall_time_s']:.1f}s)"
                )
        else:
            detail = f"{status}: {record['error']['message'].splitlines()[0][:160]}"
        self.progress(backend, f"{target}: {detail}", count=True)

    def _start(self, backend, targets):
        build = backend == self.builder and not self._weights_complete()
        if backend not in self.logs:
            self.logs[backend] = self.output.open_log(f"logs/{backend}.log")
        worker = _Worker(self.plan, backend, targets, build, self.logs[backend], self.progress)
        self.first_start.setdefault(backend, time.monotonic())
        self.workers[backend] = worker
        self.all_workers.append(worker)
        self.progress(backend, f"started (pid {worker.process.pid}), {len(targets)} targets")

    def _weights_complete(self):
        weights_dir = os.path.join(self.plan.exchange_dir, "weights")
        return all(
            os.path.exists(initial_weights_path(weights_dir, target_slug(t)))
            or os.path.exists(weights_unavailable_path(weights_dir, target_slug(t)))
            for t in self.plan.targets
        )

    def _weights_unavailable(self, targets, reason):
        """Tells the other workers that these targets' shared initial weights will not come."""
        weights_dir = os.path.join(self.plan.exchange_dir, "weights")
        for target in targets:
            slug = target_slug(target)
            if not os.path.exists(initial_weights_path(weights_dir, slug)):
                marker = weights_unavailable_path(weights_dir, slug)
                if not os.path.exists(marker):
                    with open(marker, "w") as f:
                        f.write(f"{reason}\n")

    def _active_count(self):
        return sum(
            1 for w in self.workers.values() if not w.finished and not w.trained
        )

    def _start_waiting(self):
        while self.waiting and self._active_count() < max(1, self.plan.jobs):
            backend = self.waiting.pop(0)
            self._start(backend, self.plan.targets)

    def run(self):
        plan = self.plan
        installed = []
        for backend in plan.backends:
            # Another interpreter's packages are not visible from here: its worker says.
            if plan.python.get(backend) or _backend_installed(backend):
                installed.append(backend)
            else:
                for target in plan.targets:
                    self._record(
                        backend,
                        target,
                        _failure_record(
                            target,
                            backend,
                            "unavailable",
                            f"the {backend} package is not installed in {sys.executable}; "
                            f"install it (e.g. `pip install -r backends/{backend}-"
                            f"{plan.device}.txt`) or leave {backend} out of `--backends`",
                        ),
                    )
        if not installed:
            return self.runs
        self.builder = installed[0]
        self.waiting = list(installed)
        self._start_waiting()
        while any(not w.finished and not w.trained for w in self.workers.values()) or (
            self.waiting
        ):
            for backend, worker in list(self.workers.items()):
                if worker.finished or worker.trained:
                    continue
                self._poll(backend, worker)
            self._start_waiting()
        for backend, first in self.first_start.items():
            self.runs[backend].wall_time_s = time.monotonic() - first
        return self.runs

    def _poll(self, backend, worker):
        try:
            event = worker.events.get(timeout=0.05)
        except queue.Empty:
            event = None
        if event is not None:
            self._handle(backend, worker, event)
            return
        now = time.monotonic()
        if worker.ready is None and now - worker.started > self.plan.startup_timeout_s:
            worker.kill()
            self._fail_remaining(
                backend,
                worker,
                "timeout",
                f"the {backend} worker did not start within {self.plan.startup_timeout_s:.0f}s",
            )
            return
        if worker.current is not None and now - worker.current_since > self.plan.target_timeout_s:
            target, phase = worker.current
            worker.kill()
            message = (
                f"{phase} of {target!r} on {backend} took longer than "
                f"{self.plan.target_timeout_s:.0f}s; the worker was killed "
                "(raise `--timeout` if the target is just slow)"
            )
            self._after_fault(backend, worker, target, phase, "timeout", message)

    def _handle(self, backend, worker, event):
        kind = event.get("event")
        if kind == "ready":
            worker.ready = event
            self.runs[backend].ready = event
            self.progress(backend, f"ready on {event.get('device')}")
        elif kind == "start":
            worker.current = (event["target"], event.get("phase", "train"))
            worker.current_since = time.monotonic()
        elif kind == "weights":
            worker.current = None
            if not event.get("ok"):
                self.progress(backend, f"{event['target']}: could not build initial weights")
        elif kind == "weights_done":
            worker.weights_done = True
        elif kind == "done":
            worker.current = None
            target = event["target"]
            if target in worker.pending:
                worker.pending.remove(target)
            record = event["record"]
            # The parent, not the worker, writes into the report folder (no symlink followed).
            self.output.write_json(f"runs/{backend}/{target_slug(target)}.json", record, indent=1)
            self._record(backend, target, record)
        elif kind == "trained":
            worker.trained = True
            worker.current = None
        elif kind == "_eof":
            worker.process.wait()
            self._on_exit(backend, worker)

    def _on_exit(self, backend, worker):
        code = worker.process.returncode
        tail = self._log_tail(backend)
        if worker.ready is None:
            if _looks_like_missing_backend(tail, backend):
                status, message = "unavailable", (
                    f"{backend} could not be imported by {self.plan.interpreter(backend)}")
            elif "xstable-compare: no GPU visible" in tail:
                status, message = "unavailable", (
                    f"{backend} sees no GPU (`--device gpu`); install its GPU build "
                    f"(backends/{backend}-gpu.txt) or use `--device cpu`"
                )
            else:
                status, message = "crashed", f"the {backend} worker exited with status {code} before it was ready"
            worker.finished = True
            self._fail_remaining(backend, worker, status, message, tail)
            return
        if worker.current is None and not worker.pending:
            worker.finished = True
            return
        target, phase = worker.current or (worker.pending[0], "train")
        message = f"the {backend} worker died with status {code} during {phase} of {target!r}"
        if code is not None and code < 0:
            message += f" (signal {signal.Signals(-code).name})"
        worker.finished = True
        self._after_fault(backend, worker, target, phase, "crashed", message, tail)

    def _log_tail(self, backend):
        log = self.logs.get(backend)
        if log is None:
            return ""
        try:
            # The parent's own descriptor of the log: the file it created, wherever the name
            # points now.
            size = os.fstat(log.fileno()).st_size
            start = max(0, size - _LOG_TAIL_CHARS * 4)
            data = os.pread(log.fileno(), size - start, start)
        except OSError:
            return ""
        return data.decode(errors="replace")[-_LOG_TAIL_CHARS:]

    def close_logs(self):
        for log in self.logs.values():
            log.close()
        self.logs = {}

    def kill_all(self):
        """Kills every worker this run started (their process groups) and reaps them."""
        for worker in self.all_workers:
            worker.kill()

    def _fail_remaining(self, backend, worker, status, message, tail=""):
        worker.finished = True
        if backend == self.builder and not worker.weights_done:
            # The weight-building backend itself could not run (it never became ready): no
            # target gets shared weights, and none is compared with it (there is no reference
            # result to compare with).
            self._weights_unavailable(
                worker.pending, f"the weight-building backend {backend} failed: {message}"
            )
        for target in list(worker.pending):
            self._record(backend, target, _failure_record(target, backend, status, message, tail))
        worker.pending = []

    def _after_fault(self, backend, worker, target, phase, status, message, tail=None):
        if tail is None:
            tail = self._log_tail(backend)
        worker.finished = True
        if phase == "weights":
            # This target's model crashed or hung the builder: only this target goes without
            # shared weights (and is reported as not compared); the restarted builder builds
            # the others. Training it again on this backend would fault again.
            self._weights_unavailable(
                [target], f"building the initial weights on {backend} {status}: {message}"
            )
        if target in worker.pending:
            worker.pending.remove(target)
            self._record(backend, target, _failure_record(target, backend, status, message, tail))
        self.runs[backend].restarts += 1
        if worker.pending:
            self.progress(backend, f"{status}; restarting for {len(worker.pending)} targets")
            self._start(backend, worker.pending)


def run_backends(plan, progress_stream=sys.stderr, on_target_done=None, output=None, runs=None):
    """Trains every target of `plan` on every backend, one worker process per backend.

    Args:
        plan: `RunPlan`.
        progress_stream: text stream for progress lines, or `None` for silence.
        on_target_done: optional `(target, runs) -> None`, called in this process as soon as
            every backend has a record for `target` (while the others still train), e.g. to
            draw its loss plot in the time a finished backend leaves free.
        output: `OutputFolder` of `plan.out_dir` (default: opened here); logs and per-run
            results are written through it.
        runs: optional empty dict, filled with the `BackendRuns` as they progress, so that a
            caller still has what finished when an interrupt ends the run early.

    Returns:
        `(runs, workers, progress)`: dict backend -> `BackendRuns`, the live workers (waiting
        for inspection commands; let them go with `release_workers` and `close_workers`) and
        the progress printer.
    """
    runner = _Runner(plan, progress_stream, on_target_done, output, runs)
    try:
        runs = runner.run()
    except BaseException:  # Ctrl-C and SIGTERM included: workers run in their own sessions.
        runner.kill_all()
        raise
    finally:
        runner.close_logs()
    live = {b: w for b, w in runner.workers.items() if w.trained and not w.finished}
    return runs, live, runner.progress


def release_workers(workers):
    """Asks every live worker to exit without waiting, so that they wind down together.

    A worker's exit (interpreter teardown with its backend loaded) takes seconds; asking all
    of them at once, and before the report is written, keeps that off the wall time.
    """
    for worker in workers.values():
        worker.release()


def kill_workers(workers):
    """Kills every worker of `workers` (dict backend -> worker) with its process group."""
    for worker in workers.values():
        worker.kill()


def close_workers(workers, timeout_s=30.0):
    """Asks every live worker to exit and waits for them, killing those that do not.

    Args:
        workers: dict backend -> live worker from `run_backends`.
        timeout_s: float, seconds all of them together may take to exit.
    """
    release_workers(workers)
    deadline = time.monotonic() + timeout_s
    for worker in workers.values():
        worker.close(max(0.0, deadline - time.monotonic()))


def _await(worker, kind, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            event = worker.events.get(timeout=0.1)
        except queue.Empty:
            if worker.process.poll() is not None and worker.events.empty():
                return {"ok": False, "error": f"worker exited with status {worker.process.returncode}"}
            continue
        if event.get("event") == kind:
            return event
        if event.get("event") == "_eof":
            return {"ok": False, "error": f"worker exited with status {worker.process.poll()}"}
    worker.kill()
    return {"ok": False, "error": f"no answer within {timeout_s:.0f}s; worker killed"}


def inspect_step(workers, reference, target, step, work_dir, timeout_s):
    """Captures the reference backend's state at `step` and inspects it on every backend.

    Args:
        workers: dict backend -> live worker from `run_backends`.
        reference: backend whose state is used.
        target: target string.
        step: step index.
        work_dir: private folder for the state and inspection files (`.npz`, data only).
        timeout_s: seconds each command may take.

    Returns:
        `(inspections, errors)`: dict backend -> inspection dict, dict backend -> message.
    """
    errors = {}
    slug = target_slug(target)
    state_path = os.path.join(work_dir, f"{slug}-state-{step}.npz")
    worker = workers.get(reference)
    if worker is None or worker.finished:
        return {}, {reference: "the reference backend's worker is not running"}
    worker.send({"cmd": "capture", "target": target, "step": step, "path": state_path})
    answer = _await(worker, "captured", timeout_s)
    if not answer.get("ok"):
        return {}, {reference: f"capturing the state failed: {answer.get('error')}"}
    paths = {}
    for backend, w in workers.items():
        if w.finished:
            errors[backend] = "worker not running"
            continue
        paths[backend] = os.path.join(work_dir, f"{slug}-inspect-{step}-{backend}.npz")
        w.send({"cmd": "inspect", "target": target, "state_path": state_path,
                "path": paths[backend]})
    inspections = {}
    for backend, path in paths.items():
        answer = _await(workers[backend], "inspected", timeout_s)
        if answer.get("ok"):
            try:
                inspections[backend] = load_tree(path)  # Data only: no pickle.
            except Exception as error:  # A damaged or substituted file: refused, reported.
                errors[backend] = (
                    f"the inspection file could not be read as data ({type(error).__name__}: "
                    f"{error})"
                )
        else:
            errors[backend] = answer.get("error")
    return inspections, errors

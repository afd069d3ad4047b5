"""Runs a multi-device worker in a fresh process and returns what it measured.

Several devices must be configured before the backend initialises (XLA's host-platform
device count, TF's logical CPU devices), and the test process has already initialised its
backend with one device. So every multi-device scenario runs in a worker process
(`python -m tests.distributed.worker_<backend>`), which prints one JSON line after
`RESULT_MARKER`; the tests assert on it.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["REPLICAS", "RESULT_MARKER", "REPO_ROOT", "emit_result", "run_worker"]

# Devices (JAX, TF) or processes (torch) the workers train on. This module imports no backend,
# so workers can read it before configuring theirs.
REPLICAS = 2
RESULT_MARKER = "XSTABLE_DISTRIBUTED_RESULT "
REPO_ROOT = Path(__file__).resolve().parents[2]
# Generous: a loaded 2-core CI machine imports a backend slowly; an idle one needs ~20 s.
WORKER_TIMEOUT_S = 600


def run_worker(module, env=None, timeout=WORKER_TIMEOUT_S):
    """Runs `python -m <module>` from the repository root and returns its JSON result.

    Args:
        module: Dotted module name of the worker, e.g. `"tests.distributed.worker_jax"`.
        env: Dict of extra environment variables.
        timeout: Seconds before the worker is killed.

    Returns:
        The dict the worker printed after `RESULT_MARKER`.

    Raises:
        AssertionError: If the worker fails, times out or prints no result; the message holds
            the end of its output.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p
    )
    # Own session: on timeout the whole group goes, including the torch worker's forked ranks.
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"worker {module} ran past {timeout} s: {error}") from error
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    results = [
        line[len(RESULT_MARKER) :]
        for line in completed.stdout.splitlines()
        if line.startswith(RESULT_MARKER)
    ]
    if completed.returncode != 0 or not results:
        raise AssertionError(
            f"worker {module} exited with {completed.returncode} and "
            f"{'a' if results else 'no'} result.\n--- stdout (end) ---\n"
            f"{completed.stdout[-3000:]}\n--- stderr (end) ---\n{completed.stderr[-6000:]}"
        )
    return json.loads(results[-1])


def emit_result(result):
    """Prints a worker's result for `run_worker` (called by the workers)."""
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()

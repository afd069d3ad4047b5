"""The orchestrator's bookkeeping, without spawning workers (those run in test_api/test_cli)."""

import os
import subprocess
import sys

from xstable.compare.orchestrator import RunPlan, _failure_record, _Runner, worker_env

BACKENDS = ["tensorflow", "torch", "jax"]


def _plan(tmp_path, **overrides):
    return RunPlan(targets=["a:f", "b:f"], backends=BACKENDS, out_dir=str(tmp_path), **overrides)


def test_target_done_hook_runs_once_when_every_backend_has_its_record(tmp_path):
    calls = []
    runner = _Runner(_plan(tmp_path), None, lambda target, runs: calls.append(
        (target, sorted(b for b in runs if target in runs[b].records))))
    for backend in BACKENDS:
        assert calls == []
        runner._record(backend, "a:f", _failure_record("a:f", backend, "crashed", "boom"))
    assert calls == [("a:f", sorted(BACKENDS))]
    runner._record("jax", "b:f", _failure_record("b:f", "jax", "crashed", "boom"))
    assert calls == [("a:f", sorted(BACKENDS))]


def test_workers_wait_passively_and_see_no_gpu_on_cpu(tmp_path):
    env = worker_env(_plan(tmp_path, env={"EXTRA": "1"}), "torch")
    assert env["KERAS_BACKEND"] == "torch" and env["EXTRA"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["JAX_PLATFORMS"] == "cpu"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    # A setting the user made is kept.
    env = worker_env(_plan(tmp_path, env={"OMP_WAIT_POLICY": "ACTIVE"}, device="gpu"), "jax")
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
    assert env.get("JAX_PLATFORMS") == os.environ.get("JAX_PLATFORMS")


def test_parent_process_imports_no_keras_backend():
    # The parent only orchestrates; importing a backend there would cost seconds per run.
    code = (
        "import sys; import xstable.__main__, xstable.compare, xstable.compare.api; "
        "from xstable.compare.targets import expand_targets, target_slug; "
        "expand_targets(['m:f', 'linear_fit.unscaled/failure']); "
        "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.getcwd()).stdout
    assert out.strip() == "[]"

"""`xstable compare` under hostile-but-realistic conditions (issue #29), end to end.

Each test reproduces one attack or fault with tiny specs (2-6 steps) and one or two backends:
a result file substituted with a pickle payload, symlinks planted in the report folder, a spec
that crashes the reference backend while it builds the model, SIGINT/SIGTERM to the parent,
and the exit statuses of tool errors. The runs spawn their own per-backend workers, so they
run once, in the JAX session (which has all three backends).
"""

import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import time

import pytest

from xstable.__main__ import main
from xstable.compare import compare, orchestrator, validate_report

pytestmark = [pytest.mark.slow, pytest.mark.only_backend(
    "jax", reason="spawns its own per-backend worker subprocesses; once is enough"
)]

TINY = "tests.compare.specs:tiny"
HANGS = "tests.compare.specs:hangs"
BATCHNORM = "tests.compare.specs:batchnorm_large_mean"
CRASHES = "tests.compare.specs:crashes_building_on_torch"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _target(report, target):
    return next(t for t in report["targets"] if t["target"] == target)


def test_substituted_result_files_never_run_code(tmp_path, monkeypatch):
    """Item 1: a result replaced between write and read, and pickles planted in `--out`."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    out = tmp_path / "out"
    # Where the per-layer comparison used to exchange its pickles.
    (out / "work" / "inspect").mkdir(parents=True)
    for name in ("state-3.pkl", "inspect-3-torch.pkl", "inspect-3-jax.pkl"):
        (out / "work" / "inspect" / name).write_bytes(payload)
    read = []
    real_load = orchestrator.load_tree

    def substituted_then_loaded(path):
        # The attacker wins the race: the file is replaced after the worker wrote it.
        private = os.path.dirname(os.path.dirname(path))
        read.append((private, os.stat(private).st_mode & 0o777))
        pathlib.Path(path).write_bytes(payload)
        return real_load(path)

    monkeypatch.setattr(orchestrator, "load_tree", substituted_then_loaded)
    report = compare([BATCHNORM], backends=["torch", "jax"], out_dir=str(out), plots=False,
                     progress=None)
    assert not marker.exists()
    assert read, "the per-layer comparison read no inspection"
    private, mode = read[0]
    # The exchange folder is private (0700), outside `--out`, and gone after the run.
    assert mode == 0o700 and not private.startswith(str(out))
    assert not os.path.exists(private)
    assert not (out / "work" / "inspect" / "state-3.npz").exists()
    errors = _target(report, BATCHNORM)["localization"]["errors"]
    assert set(errors) == {"torch", "jax"}, errors  # Refused, reported, not executed.
    assert validate_report(report) == []


def test_planted_symlinks_are_never_written_through(tmp_path):
    """Item 2: symlinks at every kind of file the report writes."""
    out, victims = tmp_path / "out", tmp_path / "victims"
    victims.mkdir()
    slug = orchestrator.target_slug(TINY)
    planted = ["report.json", "report.md", "logs/jax.log", f"runs/jax/{slug}.json.tmp",
               f"runs/jax/{slug}.json", f"plots/{slug}.png"]
    for i, relative in enumerate(planted):
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (victims / str(i)).write_text("precious")
        (out / relative).symlink_to(victims / str(i))
    report = compare([TINY], backends=["jax"], out_dir=str(out), progress=None)
    assert [(victims / str(i)).read_text() for i in range(len(planted))] == [
        "precious"] * len(planted)
    for relative in ("report.json", "report.md", "logs/jax.log", f"runs/jax/{slug}.json",
                     f"plots/{slug}.png"):
        assert (out / relative).is_file() and not (out / relative).is_symlink(), relative
    assert json.loads((out / "report.json").read_text()) == report
    assert _target(report, TINY)["runs"]["jax"]["status"] == "completed"


def test_reference_crash_while_building_weights_spares_other_targets(tmp_path):
    """Item 3: the crashing target is not compared; the healthy one shares its weights."""
    report = compare([CRASHES, TINY], backends=["torch", "jax"], out_dir=str(tmp_path),
                     plots=False, progress=None)
    healthy = _target(report, TINY)
    assert healthy["findings"] == []
    assert all(run["same_initial_weights"] for run in healthy["runs"].values())
    assert healthy["divergence"]["jax"]["first_divergent_step"] is None
    crashed = _target(report, CRASHES)
    assert crashed["runs"]["torch"]["status"] == "crashed"
    assert "during weights" in crashed["runs"]["torch"]["error"]
    assert crashed["runs"]["jax"]["same_initial_weights"] is False
    assert {f["kind"] for f in crashed["findings"]} == {"error"}  # Never drift/divergence.
    assert crashed["divergence"] == {}
    assert f"except for 1 target(s) whose weights could not be built there ({CRASHES})" in (
        report["settings"]["initial_weights"])
    assert report["backends"]["torch"]["restarts"] == 1


def _sessions_alive(sessions):
    alive = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions and fields[0] != "Z":
            alive.append(stat.parent.name)
    return alive


def _signal_a_hanging_compare(tmp_path, signum):
    """Runs `xstable compare` on `tiny` then `hangs`, signals it in the hang.

    Returns:
        `(parent exit status, its stderr, the parent's pid, the hanging worker's pid, out)`.
    """
    marker, out = tmp_path / "hanging-worker", tmp_path / "out"
    env = {**os.environ, "XSTABLE_TEST_HANG_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen(
        [sys.executable, "-m", "xstable", "compare", TINY, HANGS, "--backends", "jax",
         "--out", str(out), "--no-plots"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read()
            time.sleep(0.2)
        worker = int(marker.read_text())
        assert os.getpgid(worker) == worker != parent.pid  # Its own group and session.
        parent.send_signal(signum)
        _, stderr = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
    return parent.returncode, stderr, parent.pid, worker, out


def _assert_no_process_left(parent, worker, reaped=True):
    deadline = time.monotonic() + 10  # A worker killed by the kernel goes away asynchronously.
    while _sessions_alive({parent, worker}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sessions_alive({parent, worker}) == []
    if reaped:  # Not even a zombie: the parent waited for its workers.
        for group in (parent, worker):
            with pytest.raises(ProcessLookupError):
                os.killpg(group, 0)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_workers_and_writes_a_partial_report(tmp_path, signum, status):
    """Item 4: SIGTERM and SIGINT to the parent leave no process and a partial report."""
    code, stderr, parent, worker, out = _signal_a_hanging_compare(tmp_path, signum)
    assert code == status, stderr
    assert "Traceback" not in stderr
    _assert_no_process_left(parent, worker)
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert report["status"] == "interrupted"
    assert report["summary"]["exit_status"] == status
    assert report["summary"]["interrupted"] == signal.Signals(signum).name
    assert _target(report, TINY)["runs"]["jax"]["status"] == "completed"
    assert _target(report, HANGS)["runs"]["jax"]["status"] == "interrupted"
    assert "**Interrupted**" in (out / "report.md").read_text()


def test_a_parent_killed_outright_leaves_no_worker(tmp_path):
    """Item 4: even SIGKILL, which the parent cannot act on, orphans no worker."""
    code, _, parent, worker, _ = _signal_a_hanging_compare(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    # The orphaned worker is reaped by init, if at all; it must not run on.
    _assert_no_process_left(parent, worker, reaped=False)


def test_tool_errors_exit_with_status_2(tmp_path, monkeypatch, capsys):
    """Item 5: an unusable `--out` or a target that cannot be found is 2, never 1."""
    (tmp_path / "file").write_text("x")
    cases = [
        ([TINY, "--out", str(tmp_path / "file")], "is not a directory"),
        ([TINY, "--out", str(tmp_path / "file" / "sub")], "Cannot create the report folder"),
        (["no_such_module_xyz:spec", "--out", str(tmp_path / "o")], "cannot find module"),
        ([str(tmp_path / "missing.py") + ":spec", "--out", str(tmp_path / "o")],
         "does not exist"),
    ]
    for argv, message in cases:
        assert main(["compare", *argv, "--backends", "jax"]) == 2, argv
        assert message in capsys.readouterr().err
    from xstable.compare import output

    monkeypatch.setattr(output, "current_user_id", lambda: os.geteuid() + 4242)
    assert main(["compare", TINY, "--out", str(tmp_path / "o"), "--backends", "jax"]) == 2
    assert "belongs to another user" in capsys.readouterr().err


def test_unwritable_out_from_the_command_line_is_status_2_without_traceback(tmp_path):
    (tmp_path / "file").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "xstable", "compare", TINY, "--out", str(tmp_path / "file")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "not a directory" in result.stderr


def test_a_spec_that_fails_at_import_shows_the_import_error(tmp_path):
    """Item 5: the row shows the import error, not a missing attribute."""
    spec_file = tmp_path / "broken_spec.py"
    spec_file.write_text("import not_a_real_module_xyz\n\ndef spec():\n    pass\n")
    target = f"{spec_file}:spec"
    report = compare([target], backends=["jax"], out_dir=str(tmp_path / "out"), plots=False,
                     progress=None)
    error = _target(report, target)["runs"]["jax"]["error"]
    assert "No module named 'not_a_real_module_xyz'" in error, error
    assert "has no attribute" not in error
    assert report["summary"]["exit_status"] == 1  # An `error` finding, in the default fail-on.


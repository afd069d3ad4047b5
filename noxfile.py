"""Sessions for xstable: one environment per Keras backend, because Keras fixes its backend at import.

Usage:
    nox                          # = nox -s tests: TensorFlow, PyTorch and JAX on CPU
    nox -s tests-torch           # one backend
    nox -s tests-jax -- -k safe  # arguments after `--` go to pytest
    nox -l                       # list every session

GPU sessions install backends/<backend>-gpu.txt and stop with an error when the backend sees no
GPU. On a machine with no package registry whose Python already has the backend, keras, pytest
and hypothesis installed, run them without installing anything:
    XSTABLE_NOX_NO_INSTALL=1 nox --no-venv -s tests-torch-gpu
"""

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nox

ROOT = Path(__file__).parent
BACKENDS = ("tensorflow", "torch", "jax")
NO_INSTALL = os.environ.get("XSTABLE_NOX_NO_INSTALL") == "1"
# The CPU session that also installs the other two backends for the cross-backend tests.
CROSS_BACKEND_HOST = "jax"

# pytest's JUnit XML per backend session, read back for the one-line-per-backend summary.
RESULTS = ROOT / ".nox" / "_test_results"

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False

_GPU_PROBES = {
    "tensorflow": "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)",
    "torch": "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)",
    "jax": "import jax, sys; sys.exit(0 if any(d.platform == 'gpu' for d in jax.devices()) else 1)",
}


def _requirements(backend, device):
    return str(ROOT / "backends" / f"{backend}-{device}.txt")


def _install(session, requirements, extras="test"):
    """Installs pinned backends and xstable, or nothing when XSTABLE_NOX_NO_INSTALL=1."""
    if NO_INSTALL:
        session.env["PYTHONPATH"] = str(ROOT)
        session.log("XSTABLE_NOX_NO_INSTALL=1: using the packages already installed")
        return
    session.install("-r", requirements)
    session.install(f".[{extras}]")


def _require_gpu(session, backend):
    code = _GPU_PROBES[backend]
    try:
        session.run("python", "-c", code, silent=True, env={"KERAS_BACKEND": backend})
    except nox.command.CommandFailed:
        session.error(
            f"No GPU is visible to {backend}: the session `{session.name}` needs one. "
            "Check `nvidia-smi`, the CUDA driver and that backends/"
            f"{backend}-gpu.txt installed a GPU build; use `nox -s tests-{backend}` for CPU."
        )


def _summary_line(name):
    """One readable line for a backend session, from its JUnit XML (or why there is none)."""
    path = RESULTS / f"{name}.xml"
    if not path.is_file():
        return f"{name}: did not run (installation failed or the session was interrupted)"
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError:
        return f"{name}: no readable result ({path})"
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {
        key: sum(int(s.get(key, 0)) for s in suites)
        for key in ("tests", "failures", "errors", "skipped")
    }
    seconds = sum(float(s.get("time", 0.0)) for s in suites)
    passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    failed = totals["failures"] + totals["errors"]
    verdict = "OK" if failed == 0 and totals["tests"] > 0 else "FAILED"
    return (
        f"{name}: {verdict}, {passed} passed, {failed} failed, {totals['skipped']} skipped "
        f"in {seconds / 60:.1f} min"
    )


def _pytest(session, backend, device):
    session.env["KERAS_BACKEND"] = backend
    session.env["XSTABLE_TEST_DEVICE"] = device
    RESULTS.mkdir(parents=True, exist_ok=True)
    junit = RESULTS / f"{session.name}.xml"
    junit.unlink(missing_ok=True)
    try:
        session.run("python", "-m", "pytest", f"--junitxml={junit}", *session.posargs)
    finally:
        session.log(_summary_line(session.name))


def _make_test_session(backend, device):
    name = f"tests-{backend}" if device == "cpu" else f"tests-{backend}-gpu"

    def run_tests(session):
        requirements = _requirements(backend, device)
        if backend == CROSS_BACKEND_HOST and device == "cpu":
            # The cross-backend tests (xstable compare's per-backend subprocesses, .keras files
            # saved on one backend and loaded on another) need all three libraries; they run
            # once, in this session, whose Keras backend stays jax.
            requirements = str(ROOT / "backends" / "all-cpu.txt")
            _install(session, requirements, extras="test,report")
        else:
            _install(session, requirements)
        session.env["KERAS_BACKEND"] = backend
        if device == "gpu":
            _require_gpu(session, backend)
        _pytest(session, backend, device)

    run_tests.__doc__ = (
        f"Run the test suite on the {backend} backend ({device.upper()}).\n\n"
        f"Usage: nox -s {name} [-- pytest arguments]"
    )
    return nox.session(name=name, python=False if NO_INSTALL else None)(run_tests)


def _make_bench_session(backend):
    name = f"bench-{backend}"

    def run_bench(session):
        _install(session, _requirements(backend, "cpu"), extras="test")
        session.env["KERAS_BACKEND"] = backend
        scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
        if session.posargs:
            scripts = [s for s in scripts if any(p in s.name for p in session.posargs)]
        if not scripts:
            session.error("No benchmarks/bench_*.py matched the given arguments.")
        for script in scripts:
            session.run("python", str(script))

    run_bench.__doc__ = (
        f"Benchmarks on {backend}: ratios against plain Keras, measured side by side.\n\n"
        f"Usage: nox -s {name} [-- name-filter ...]"
    )
    return nox.session(name=name, python=False if NO_INSTALL else None)(run_bench)


for _backend in BACKENDS:
    globals()[f"tests_{_backend}"] = _make_test_session(_backend, "cpu")
    globals()[f"tests_{_backend}_gpu"] = _make_test_session(_backend, "gpu")
    globals()[f"bench_{_backend}"] = _make_bench_session(_backend)


@nox.session(python=False)
def tests(session):
    """Run the suite on all three CPU backends, each in its own environment (the default).

    Usage: nox -s tests [-- pytest arguments]
    """
    for backend in BACKENDS:
        (RESULTS / f"tests-{backend}.xml").unlink(missing_ok=True)
        session.notify(f"tests-{backend}", posargs=session.posargs)
    session.notify("tests-summary")


@nox.session(name="tests-summary", python=False)
def tests_summary(session):
    """Print one line per backend for the last `nox -s tests` (run by it, at its end).

    Usage: nox -s tests-summary
    """
    print()
    print("xstable test results, one line per backend:")
    for backend in BACKENDS:
        print("  " + _summary_line(f"tests-{backend}"))


@nox.session(python=False)
def bench(session):
    """Run the benchmarks on all three CPU backends.

    Usage: nox -s bench [-- name-filter ...]
    """
    for backend in BACKENDS:
        session.notify(f"bench-{backend}", posargs=session.posargs)


@nox.session(name="tests-distributed", python=False)
def tests_distributed(session):
    """Run only the multi-device tests (tests/distributed) on all three CPU backends.

    JAX runs keras.distribution.DataParallel over virtual CPU devices, TensorFlow runs
    MirroredStrategy over logical CPU devices, torch runs a DistributedDataParallel recipe
    (gloo, loopback). The same tests also run inside every `tests-<backend>` session.

    Usage: nox -s tests-distributed [-- pytest arguments]
    """
    for backend in BACKENDS:
        session.notify(f"tests-{backend}", posargs=["tests/distributed", *session.posargs])


ZOO = ("digits_cnn", "lstm_sequence", "gru_sequence", "attention_classifier", "dropout_mlp",
       "mixed_precision_mlp")


def _compare(session, device):
    _install(session, str(ROOT / "backends" / f"all-{device}.txt"), extras="report")
    if not NO_INSTALL:
        session.install("scikit-learn>=1.3")  # the zoo's digits (bundled, no download)
    if device == "gpu":
        for backend in BACKENDS:
            _require_gpu(session, backend)
    # The seed scenarios are meant to produce NaNs: only errors fail the session by default.
    args = session.posargs or ["--fail-on", "error"]
    suffix = "-gpu" if device == "gpu" else ""
    session.run("python", "-m", "xstable", "compare", "--out", f"reports/compare{suffix}",
                "--device", device, *args)
    if session.posargs:
        return  # Targets or settings of the caller's own: no zoo.
    # The model zoo (examples/zoo): real layer families, a few steps each. Its one known
    # difference (TensorFlow's Embedding + Adam update, docs/compare.md) is a divergence, so
    # only errors fail the session here too. compare prints the zoo's wall time.
    zoo = [f"examples/zoo/specs.py:{name}" for name in ZOO]
    session.run("python", "-m", "xstable", "compare", *zoo, "--out",
                f"reports/compare-zoo{suffix}", "--device", device, "--fail-on", "error")


@nox.session(python=False if NO_INSTALL else None)
def compare(session):
    """The main job: train every seed scenario on TensorFlow, PyTorch and JAX (CPU) and compare.

    One environment with all three backends (backends/all-cpu.txt); each backend runs in its
    own subprocess from the same initial weights and batch order. Writes
    reports/compare/report.md (the README's first table), report.html, report.json and loss
    plots; then the model zoo (examples/zoo: CNN + BatchNormalization on digits, LSTM, GRU,
    Embedding + MultiHeadAttention, dropout, mixed precision) into reports/compare-zoo.

    Usage: nox -s compare [-- xstable compare arguments, e.g. linear_fit.unscaled --fail-on any]
    """
    _compare(session, "cpu")


@nox.session(name="compare-gpu", python=False if NO_INSTALL else None)
def compare_gpu(session):
    """The same comparison on GPU (backends/all-gpu.txt); stops if a backend sees no GPU.

    Usage: nox -s compare-gpu [-- xstable compare arguments]
    """
    _compare(session, "gpu")


@nox.session
def lint(session):
    """Lint and check formatting with ruff.

    Usage: nox -s lint
    """
    session.install("ruff")
    session.run("ruff", "check", ".")

"""Shared pytest setup: one Keras backend per process (KERAS_BACKEND), TF32 off, fixed seeds.

Markers (registered in pyproject.toml, `--strict-markers` on):
  @pytest.mark.skip_backend("torch", reason="...")   skip on that backend
  @pytest.mark.only_backend("jax", reason="...")     run on that backend only
A missing or empty `reason=` is an error, so every backend skip says why.
"""

import os

import keras
import pytest
from hypothesis import HealthCheck, settings

import xstable

SEED = 1337

# Hypothesis: health checks about how efficiently examples are generated (not about what the
# code under test does) are off; some adversarial strategies, e.g. float16 arrays that allow
# NaN, are rejected by Hypothesis itself often enough to trip `filter_too_much` at random.
# `XSTABLE_HYPOTHESIS_PROFILE=ci` (set by .ci/run) also derandomizes, so CI runs the same
# examples every time; local runs keep drawing new ones.
_GENERATION_CHECKS = [HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("dev", suppress_health_check=_GENERATION_CHECKS)
settings.register_profile("ci", suppress_health_check=_GENERATION_CHECKS, derandomize=True)
settings.load_profile(os.environ.get("XSTABLE_HYPOTHESIS_PROFILE", "dev"))


def pytest_report_header(config):
    versions = xstable.library_versions()
    return [
        f"xstable {xstable.__version__}: keras backend={versions['backend']} "
        f"({versions['backend']} {versions['backend_version']}), keras {versions['keras']}, "
        f"numpy {versions['numpy']}, device={xstable.active_device()}, "
        f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '<unset>')}, TF32 off, seed={SEED}"
    ]


def pytest_configure(config):
    xstable.disable_tf32()


def _marker_reason(item, marker):
    reason = marker.kwargs.get("reason")
    if not reason or not str(reason).strip():
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{marker.name}({marker.args!r}) needs a non-empty "
            "`reason=` saying why the backend is treated differently."
        )
    return reason


def pytest_collection_modifyitems(config, items):
    backend = keras.config.backend()
    for item in items:
        # `-m property` selects every Hypothesis test (CI's randomized pass runs these).
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.property)
        for marker in item.iter_markers("skip_backend"):
            reason = _marker_reason(item, marker)
            if backend in marker.args:
                item.add_marker(pytest.mark.skip(reason=f"[{backend}] {reason}"))
        for marker in item.iter_markers("only_backend"):
            reason = _marker_reason(item, marker)
            if backend not in marker.args:
                item.add_marker(pytest.mark.skip(reason=f"[not {backend}] {reason}"))


@pytest.fixture(autouse=True)
def fixed_seed():
    """Every test starts from the same Python, NumPy and backend random state."""
    keras.utils.set_random_seed(SEED)
    yield


@pytest.fixture
def backend():
    """The active Keras backend's name."""
    return keras.config.backend()

"""xstable: numerical stability for Keras 3 on TensorFlow, PyTorch and JAX.

The backend is the one Keras chose at import (`KERAS_BACKEND`); `xstable.active_backend()`
says which.

Modules:
    numerics: safe_log, safe_sqrt, safe_divide, ... finite values and gradients.
    losses: SafeBinaryCrossentropy, SafeCategoricalCrossentropy, SafeLoss, ...
    optimizers: GuardedOptimizer (clipping, adaptive clipping, skipping non-finite steps).
    layers: FiniteCheck, insert_finite_checks, AutoScale.
    callbacks: NaNSentinel.
    diagnosis: diagnose, locate_nonfinite.
    training: TrainingSpec, run_spec (pinned batch order, per-step losses).
    scenarios: the seed documents' failure cases and fixes.
    compare: cross-backend comparison (`xstable compare`).
"""

from xstable import (
    callbacks,
    diagnosis,
    layers,
    losses,
    numerics,
    optimizers,
    training,
)
from xstable._version import __version__
from xstable.diagnosis import NonFiniteLocation, diagnose, locate_nonfinite
from xstable.errors import NonFiniteError
from xstable.runtime import active_backend, active_device, disable_tf32, library_versions

__all__ = [
    "__version__",
    "NonFiniteError",
    "NonFiniteLocation",
    "active_backend",
    "active_device",
    "callbacks",
    "diagnose",
    "diagnosis",
    "disable_tf32",
    "layers",
    "library_versions",
    "locate_nonfinite",
    "losses",
    "numerics",
    "optimizers",
    "training",
]

"""xstable: numerical stability for Keras 3 on TensorFlow, PyTorch and JAX.

The backend is the one Keras chose at import (`KERAS_BACKEND`); `xstable.active_backend()`
says which.

Modules:
    numerics: safe_log, safe_sqrt, safe_divide, ... finite values and gradients.
    losses: SafeBinaryCrossentropy, SafeCategoricalCrossentropy, SafeLoss, to_logits_model, ...
    optimizers: GuardedOptimizer (clipping, adaptive clipping, skipping non-finite steps).
    layers: FiniteCheck, insert_finite_checks, AutoScale.
    callbacks: StabilityMonitor (NaN, inf and loss spikes: raise, warn, count or recover).
    diagnosis: diagnose, locate_nonfinite.
    inspection: record_step, first_nonfinite (one training step recorded as data).
    training: TrainingSpec, run_spec (pinned batch order, per-step losses).
    scenarios: the seed documents' failure cases and fixes.
    compare: cross-backend comparison (`xstable compare`).

Submodules and the names below are imported on first use, so that `import xstable` (and the
`xstable compare` parent process, which runs every backend in its own subprocess) does not
import Keras and its backend until something needs them. xstable's serializable classes
(layers, losses, optimizers, callbacks) are registered with Keras as soon as Keras is
imported, before or after xstable, so `import keras, xstable` is enough for
`keras.saving.load_model` to load a model that uses them.
"""

import importlib

from xstable import _registration
from xstable._version import __version__
from xstable.errors import NonFiniteError

_SUBMODULES = (
    "callbacks",
    "compare",
    "diagnosis",
    "inspection",
    "layers",
    "losses",
    "numerics",
    "optimizers",
    "runtime",
    "scenarios",
    "testing",
    "training",
)
_ATTRIBUTES = {
    "NonFiniteLocation": "xstable.diagnosis",
    "diagnose": "xstable.diagnosis",
    "locate_nonfinite": "xstable.diagnosis",
    "active_backend": "xstable.runtime",
    "active_device": "xstable.runtime",
    "disable_tf32": "xstable.runtime",
    "library_versions": "xstable.runtime",
}

__all__ = ["__version__", "NonFiniteError", *_ATTRIBUTES, *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"xstable.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'xstable' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


_registration.register_when_keras_imports()

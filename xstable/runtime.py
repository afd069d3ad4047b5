"""What xstable runs on: the active Keras backend, its device and library versions.

The backend library's own answers (devices, TF32 matmul settings) come through
`xstable.backend`, the one place that imports it.
"""

import importlib.metadata
import platform

import keras

from xstable import backend

__all__ = ["active_backend", "active_device", "library_versions", "disable_tf32"]

_BACKEND_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "torch": ("torch",),
    "jax": ("jax", "jaxlib"),
}


def active_backend():
    """Returns the name of the Keras backend in use: `"tensorflow"`, `"torch"` or `"jax"`.

    Keras picks the backend once, at import, from the `KERAS_BACKEND` environment variable
    (or `~/.keras/keras.json`); to use another backend, start a new process.
    """
    return backend.NAME


def active_device():
    """Returns the device the active backend computes on by default, e.g. `"cpu"`, `"gpu:0"`.

    The answer comes from the backend library itself (`torch.cuda`, `jax.devices()`,
    `tf.config`), so it reflects what is visible to this process.
    """
    return backend.device_name()


def _distribution_version(names):
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def library_versions():
    """Returns a dict of the versions that decide numerical behaviour.

    Keys: `python`, `keras`, `numpy`, `backend` (the active backend's name) and
    `backend_version` (the installed version of that backend's library).
    """
    name = active_backend()
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": _distribution_version(("numpy",)),
        "backend": name,
        "backend_version": _distribution_version(_BACKEND_DISTRIBUTIONS.get(name, ())),
    }


def disable_tf32():
    """Turns TensorFloat-32 matmuls off on the active backend so float32 means float32.

    TF and JAX use TF32 on Ampere-or-newer GPUs by default, torch does not; with TF32 off,
    results from the three backends are comparable to a float32 or float64 reference.
    Harmless on CPU.
    """
    backend.disable_tf32()

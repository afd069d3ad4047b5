"""What xstable runs on: the active Keras backend, its device and library versions.

This is the one place where xstable asks a backend library about itself (devices,
TF32 matmul settings). Everything else goes through `keras.ops`.
"""

import importlib.metadata
import platform

import keras

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
    return keras.config.backend()


def active_device():
    """Returns the device the active backend computes on by default, e.g. `"cpu"`, `"gpu:0"`.

    The answer comes from the backend library itself (`torch.cuda`, `jax.devices()`,
    `tf.config`), so it reflects what is visible to this process.
    """
    backend = active_backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"gpu:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
        return "cpu"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "cpu":
            return "cpu"
        return f"{device.platform}:{device.id} ({device.device_kind})"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"gpu:0 ({details.get('device_name', 'unknown')})"
        return "cpu"
    return "unknown"


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
    backend = active_backend()
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": _distribution_version(("numpy",)),
        "backend": backend,
        "backend_version": _distribution_version(_BACKEND_DISTRIBUTIONS.get(backend, ())),
    }


def disable_tf32():
    """Turns TensorFloat-32 matmuls off on the active backend so float32 means float32.

    TF and JAX use TF32 on Ampere-or-newer GPUs by default, torch does not; with TF32 off,
    results from the three backends are comparable to a float32 or float64 reference.
    Harmless on CPU.
    """
    backend = active_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")

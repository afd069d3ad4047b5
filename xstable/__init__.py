"""xstable: numerical stability for Keras 3 on TensorFlow, PyTorch and JAX.

The backend is the one Keras chose at import (`KERAS_BACKEND`); `xstable.active_backend()`
says which.
"""

from xstable._version import __version__
from xstable.errors import NonFiniteError
from xstable.runtime import active_backend, active_device, disable_tf32, library_versions

__all__ = [
    "__version__",
    "NonFiniteError",
    "active_backend",
    "active_device",
    "disable_tf32",
    "library_versions",
]

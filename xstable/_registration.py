"""Registers xstable's serializable classes with Keras as soon as Keras is imported.

`keras.saving.load_model` finds a custom class only if the module defining it ran, so
`import xstable` must run xstable's layers, losses, optimizers and callbacks modules. Importing
them imports Keras and its backend (seconds), which the `xstable compare` parent process never
needs: it only starts one subprocess per backend. So the registration runs right away when
Keras is already imported, and otherwise right after Keras finishes importing, whichever
comes first (a finder on `sys.meta_path` that wraps Keras's loader once, then removes itself).
"""

import importlib
import importlib.abc
import importlib.util
import sys

SERIALIZABLE_MODULES = (
    "xstable.layers",
    "xstable.losses",
    "xstable.optimizers",
    "xstable.callbacks",
)


def register_serializables():
    """Imports every module that registers classes with `keras.saving`."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


class _RunAfterExec(importlib.abc.Loader):
    """Keras's own loader, then `callback()` once the module has executed."""

    def __init__(self, loader, callback):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: Keras's loader's
        return getattr(self._loader, name)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    def __init__(self, callback):
        self._callback = callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RunAfterExec(spec.loader, self._callback)
        return spec


def register_when_keras_imports():
    """Registers now if Keras is imported, else right after Keras is first imported."""
    if "keras" in sys.modules:
        register_serializables()
    elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport(register_serializables))

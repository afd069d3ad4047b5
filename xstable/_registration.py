"""Registers xstable's serializable classes with Keras as soon as Keras is imported.

`keras.saving.load_model` finds a custom class only if the module defining it ran, so
`import xstable` must run xstable's layers, losses, optimizers and callbacks modules. Importing
them imports Keras and its backend (seconds), which the `xstable compare` parent process never
needs: it only starts one subprocess per backend. So the registration runs right away when
Keras is already imported, and otherwise as soon as Keras has been imported and no xstable
module is half-way through its own import (registering in the middle of one, e.g. while
`xstable.runtime` imports Keras, would import modules that need it finished). A finder on
`sys.meta_path` watches the imports of Keras and of xstable's modules for that moment, then
removes itself.
"""

import importlib
import importlib.abc
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


class _NotifyAfterExec(importlib.abc.Loader):
    """The module's own loader; tells `watcher` when the module starts and ends executing."""

    def __init__(self, loader, watcher):
        self._loader = loader
        self._watcher = watcher

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._watcher.depth += 1
        try:
            self._loader.exec_module(module)
        finally:
            self._watcher.depth -= 1
        self._watcher.maybe_register()

    def __getattr__(self, name):  # get_resource_reader, is_package, get_source, ...
        return getattr(self._loader, name)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.depth = 0  # xstable (or Keras) modules executing right now, nested
        self._done = False

    def find_spec(self, fullname, path=None, target=None):
        if self._done or not (fullname == "keras" or fullname.startswith("xstable.")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _NotifyAfterExec(spec.loader, self)
                return spec
        return None

    def maybe_register(self):
        if self._done or self.depth or "keras" not in sys.modules:
            return
        self._done = True
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        register_serializables()


def register_when_keras_imports():
    """Registers now if Keras is imported, else as soon as Keras is imported (see module)."""
    if "keras" in sys.modules:
        register_serializables()
    elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKeras())

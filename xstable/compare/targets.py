"""What `xstable compare` runs: seed scenarios by id, or a user's `module:function` spec.

A *target* is a string. Each backend's worker process resolves it on its own (a spec holds
callables, which cannot cross process boundaries), so resolution must be deterministic:

- `module.path:function` or `path/to/file.py:function`: `function` is called with no
  arguments and returns a `TrainingSpec` or a dict in the format of `spec_from_dict`. The
  attribute may also be a `TrainingSpec` or dict itself.
- A seed scenario id from `xstable.scenarios` (e.g. `"linear-fit/failure"`), when that
  registry is installed.
"""

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import re
import sys

from xstable.training import TrainingSpec

__all__ = [
    "DICT_SPEC_KEYS",
    "REQUIRED_DICT_SPEC_KEYS",
    "default_targets",
    "load_spec",
    "spec_summary",
    "spec_from_dict",
    "target_slug",
]

REQUIRED_DICT_SPEC_KEYS = ("name", "build_model", "make_data", "make_compile_args")
DICT_SPEC_KEYS = REQUIRED_DICT_SPEC_KEYS + (
    "epochs",
    "batch_size",
    "shuffle",
    "seed",
    "jit_compile",
    "description",
)

_SPEC_FORMAT_HELP = (
    "A spec is an `xstable.training.TrainingSpec`, or a dict with the required keys "
    f"{list(REQUIRED_DICT_SPEC_KEYS)} (callables `build_model() -> keras.Model`, "
    "`make_data() -> (x, y)` NumPy arrays, `make_compile_args() -> dict` for `model.compile`) "
    f"and the optional keys {list(DICT_SPEC_KEYS[len(REQUIRED_DICT_SPEC_KEYS):])}."
)


def spec_from_dict(data):
    """Builds a `TrainingSpec` from a plain dict, checking keys and types.

    Args:
        data: dict with the required keys `name` (str), `build_model`, `make_data` and
            `make_compile_args` (callables taking no arguments), and optionally `epochs`,
            `batch_size`, `shuffle`, `seed`, `jit_compile` and `description`, with the
            meanings of the `TrainingSpec` fields of the same names.

    Returns:
        A `TrainingSpec`.

    Raises:
        TypeError: If `data` is not a dict or a callable field is not callable.
        ValueError: If a required key is missing, an unknown key is present, or a value is
            out of range.

    Example:

    >>> import keras, numpy as np
    >>> spec = spec_from_dict({
    ...     "name": "tiny",
    ...     "build_model": lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
    ...     "make_data": lambda: (np.ones((8, 2), "float32"), np.ones((8, 1), "float32")),
    ...     "make_compile_args": lambda: {"optimizer": "sgd", "loss": "mse"},
    ...     "batch_size": 4,
    ... })
    >>> spec.batch_size
    4
    """
    if not isinstance(data, dict):
        raise TypeError(
            f"`data` must be a dict. Received: data of type {type(data).__name__}. "
            + _SPEC_FORMAT_HELP
        )
    missing = [key for key in REQUIRED_DICT_SPEC_KEYS if key not in data]
    if missing:
        raise ValueError(
            f"The spec dict is missing the required keys {missing}. "
            f"Received keys: {sorted(data)}. " + _SPEC_FORMAT_HELP
        )
    unknown = sorted(set(data) - set(DICT_SPEC_KEYS))
    if unknown:
        raise ValueError(
            f"The spec dict has unknown keys {unknown}. Allowed keys: {list(DICT_SPEC_KEYS)}. "
            "Put fit-time settings in `epochs`/`batch_size`/`shuffle`/`seed` and compile "
            "arguments in `make_compile_args`."
        )
    return TrainingSpec(**data)


def _import_module(module_part, target):
    if module_part.endswith(".py"):
        path = os.path.abspath(module_part)
        if not os.path.isfile(path):
            raise ValueError(
                f"Target {target!r}: the file {path!r} does not exist. Pass "
                "`path/to/file.py:function` with an existing file, or `module:function`."
            )
        name = "_xstable_compare_target_" + re.sub(r"\W", "_", path)
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as error:
        if error.name and module_part.split(".")[0] != error.name.split(".")[0]:
            raise  # The target module exists but one of its own imports is missing.
        raise ValueError(
            f"Target {target!r}: cannot import module {module_part!r} ({error}). Run from the "
            "directory that contains it, add that directory to PYTHONPATH, or pass "
            "`path/to/file.py:function`."
        ) from error


def _load_user_spec(target):
    module_part, _, attribute = target.rpartition(":")
    if not module_part or not attribute:
        raise ValueError(
            f"Target {target!r} must look like `module:function` or `file.py:function`."
        )
    module = _import_module(module_part, target)
    if not hasattr(module, attribute):
        public = sorted(name for name in vars(module) if not name.startswith("_"))
        raise ValueError(
            f"Target {target!r}: module {module_part!r} has no attribute {attribute!r}. "
            f"Its public names are {public}."
        )
    value = getattr(module, attribute)
    if callable(value) and not isinstance(value, (TrainingSpec, dict)):
        value = value()
    if isinstance(value, TrainingSpec):
        return value
    if isinstance(value, dict):
        return spec_from_dict(value)
    raise TypeError(
        f"Target {target!r} must give a `TrainingSpec` or a spec dict. Received: "
        f"{type(value).__name__}. " + _SPEC_FORMAT_HELP
    )


def _scenario_registry():
    try:
        return importlib.import_module("xstable.scenarios")
    except ModuleNotFoundError as error:
        if error.name not in ("xstable.scenarios", "xstable"):
            raise
        return None


def _scenario_ids(registry):
    ids_function = getattr(registry, "scenario_ids", None)
    if ids_function is None:
        raise RuntimeError(
            "`xstable.scenarios` does not provide `scenario_ids()`, which `xstable compare` "
            "uses to list the seed scenarios. Pass targets explicitly."
        )
    return list(ids_function())


def default_targets():
    """Returns the ids of every seed scenario variant, the default targets of a comparison.

    Returns:
        A list of target strings.

    Raises:
        RuntimeError: If the seed scenario registry `xstable.scenarios` is not available.
    """
    registry = _scenario_registry()
    if registry is None:
        raise RuntimeError(
            "No targets given and the seed scenarios (`xstable.scenarios`) are not installed. "
            "Pass targets such as `mymodule:make_spec`."
        )
    return _scenario_ids(registry)


def load_spec(target):
    """Resolves one target string to a `TrainingSpec`.

    Args:
        target: str, `module:function`, `path/to/file.py:function`, or a seed scenario id.

    Returns:
        A `TrainingSpec`.

    Raises:
        TypeError: If `target` is not a string, or the function returns something that is
            neither a `TrainingSpec` nor a spec dict.
        ValueError: If the module, file, function or scenario does not exist, or the spec
            dict is malformed.
    """
    if not isinstance(target, str) or not target:
        raise TypeError(f"`target` must be a non-empty string. Received: target={target!r}.")
    if ":" in target:
        return _load_user_spec(target)
    registry = _scenario_registry()
    if registry is None:
        raise ValueError(
            f"Target {target!r} is not `module:function`, and the seed scenarios "
            "(`xstable.scenarios`) are not installed to look it up as a scenario id."
        )
    known = _scenario_ids(registry)
    if target not in known:
        raise ValueError(f"Unknown scenario id {target!r}. Known ids: {known}.")
    spec = registry.get_spec(target)
    if not isinstance(spec, TrainingSpec):
        raise TypeError(
            f"Scenario {target!r} gave {type(spec).__name__}, not a `TrainingSpec`."
        )
    return spec


def target_slug(target):
    """Returns a file-name-safe form of a target string, unique by a short hash suffix."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", target).strip("_")[-60:] or "target"
    return f"{readable}-{hashlib.sha1(target.encode()).hexdigest()[:6]}"


def spec_summary(spec):
    """Returns the JSON-serializable, non-callable fields of a spec."""
    return {
        f.name: getattr(spec, f.name)
        for f in dataclasses.fields(spec)
        if not callable(getattr(spec, f.name))
    }

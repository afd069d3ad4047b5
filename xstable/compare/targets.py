"""What `xstable compare` runs: seed scenarios by id, or a user's `module:function` spec.

A *target* is a string. Each backend's worker process resolves it on its own (a spec holds
callables, which cannot cross process boundaries), so resolution must be deterministic:

- `module.path:function` or `path/to/file.py:function`: `function` is called with no
  arguments and returns a `TrainingSpec` or a dict in the format of `spec_from_dict`. The
  attribute may also be a `TrainingSpec` or dict itself.
- A seed scenario variant `<scenario id>/<variant kind>` from `xstable.scenarios` (e.g.
  `"linear_fit.unscaled/failure"`); a bare scenario id stands for all of its variants
  (`expand_targets`).
- A saved model, `path/to/model.keras`: the file's architecture and weights (the initial
  weights on every backend), its own compile configuration (loss, optimizer, metrics; a fresh
  optimizer), and the arrays `x` and `y` of a `.npz` data file (`SavedModelOptions`).
"""

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
import zipfile

__all__ = [
    "SavedModelOptions",
    "is_saved_model_target",
    "DICT_SPEC_KEYS",
    "REQUIRED_DICT_SPEC_KEYS",
    "check_target_resolvable",
    "default_targets",
    "expand_targets",
    "initial_weights_for",
    "load_data_file",
    "load_spec",
    "target_settings",
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
    from xstable.training import TrainingSpec  # Imports Keras: only where a spec is built.

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
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            # As `import` does: a module that failed is not left half-initialized, or the next
            # lookup would report a missing attribute instead of the import error.
            del sys.modules[name]
            raise
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
    from xstable.training import TrainingSpec

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


def _require_registry(target):
    registry = _scenario_registry()
    if registry is None:
        raise ValueError(
            f"Target {target!r} is not `module:function`, and the seed scenarios "
            "(`xstable.scenarios`) are not installed to look it up as a scenario."
        )
    return registry


def _scenario_variant(target):
    """Returns `(scenario, variant)` of a `<scenario id>/<variant kind>` target."""
    registry = _require_registry(target)
    scenario_id, _, kind = target.partition("/")
    known = list(registry.scenario_ids())
    if scenario_id not in known:
        raise ValueError(f"Unknown scenario id {scenario_id!r} in target {target!r}. "
                         f"Known ids: {known}.")
    scenario = registry.get_scenario(scenario_id)
    if kind not in scenario.variant_kinds():
        raise ValueError(
            f"Scenario {scenario_id!r} has no variant {kind!r}; it has "
            f"{list(scenario.variant_kinds())}. Write targets as `<scenario id>/<variant>`."
        )
    return scenario, scenario.variant(kind)


def default_targets():
    """Returns every variant of every seed scenario, the default targets of a comparison.

    Returns:
        A list of `<scenario id>/<variant kind>` strings in registry order.

    Raises:
        RuntimeError: If the seed scenario registry `xstable.scenarios` is not available.
    """
    registry = _scenario_registry()
    if registry is None:
        raise RuntimeError(
            "No targets given and the seed scenarios (`xstable.scenarios`) are not installed. "
            "Pass targets such as `mymodule:make_spec`."
        )
    return [
        f"{scenario.id}/{kind}"
        for scenario in registry.all_scenarios()
        for kind in scenario.variant_kinds()
    ]


def expand_targets(targets):
    """Expands bare scenario ids into one target per variant; other targets pass through.

    Args:
        targets: list of target strings.

    Returns:
        A list of target strings.
    """
    expanded = []
    for target in targets:
        if ":" in target or "/" in target or is_saved_model_target(target):
            expanded.append(target)
            continue
        registry = _require_registry(target)
        if target not in list(registry.scenario_ids()):
            raise ValueError(
                f"Unknown target {target!r}: not `module:function`, `file.py:function`, "
                f"`<scenario id>/<variant>` or a scenario id. Known scenario ids: "
                f"{list(registry.scenario_ids())}."
            )
        scenario = registry.get_scenario(target)
        expanded.extend(f"{target}/{kind}" for kind in scenario.variant_kinds())
    return expanded


def check_target_resolvable(target):
    """Checks, without running any of the target's code, that a target can be found.

    A `module:function` target's module must be findable on the path (its parent packages are
    imported to look, as `import` would), a `file.py:function` target's file must exist, and a
    seed scenario variant must be registered. Whether the module imports and the function gives
    a spec is left to the workers, which report an import error as such.

    Args:
        target: str.

    Raises:
        ValueError: If the target cannot be found.
    """
    if is_saved_model_target(target):
        if not os.path.isfile(os.path.abspath(target)):
            raise ValueError(f"Target {target!r}: the model file {os.path.abspath(target)!r} "
                             "does not exist.")
        _read_saved_config(os.path.abspath(target))
        return
    if ":" not in target:
        _scenario_variant(target)
        return
    module_part, _, attribute = target.rpartition(":")
    if not module_part or not attribute:
        raise ValueError(
            f"Target {target!r} must look like `module:function` or `file.py:function`."
        )
    if module_part.endswith(".py"):
        if not os.path.isfile(os.path.abspath(module_part)):
            raise ValueError(
                f"Target {target!r}: the file {os.path.abspath(module_part)!r} does not exist. "
                "Pass `path/to/file.py:function` with an existing file, or `module:function`."
            )
        return
    try:
        found = importlib.util.find_spec(module_part)
    except ModuleNotFoundError as error:
        if error.name and not (module_part + ".").startswith(error.name + "."):
            return  # A parent package imports a missing module: the workers report that.
        found = None
    except Exception:
        return  # A parent package fails to import: the workers report that error.
    if found is None:
        raise ValueError(
            f"Target {target!r}: cannot find module {module_part!r}. Run from the directory "
            "that contains it, add that directory to PYTHONPATH, or pass "
            "`path/to/file.py:function`."
        )


@dataclasses.dataclass(frozen=True)
class SavedModelOptions:
    """How a saved-model target (`path/model.keras`) is run.

    Args:
        data: str, path of a `.npz` file with the array `x` (inputs) and, to train, `y`
            (targets); read with `allow_pickle=False`.
        epochs: int, passes over the data when training.
        batch_size: int, rows per step (and per prediction batch).
        shuffle: bool, a new (NumPy-pinned, same on every backend) batch order each epoch.
    """

    data: str | None = None
    epochs: int = 1
    batch_size: int = 32
    shuffle: bool = False

    def __post_init__(self):
        if self.data is not None and not isinstance(self.data, str):
            raise TypeError(f"`data` must be a path string. Received: data={self.data!r}.")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: "
                                 f"{name}={value!r}.")

    def to_dict(self):
        return dataclasses.asdict(self)


def is_saved_model_target(target):
    """Whether a target string names a saved Keras model file (`*.keras`)."""
    return isinstance(target, str) and target.endswith(".keras") and ":" not in target


def _read_saved_config(path):
    """The `config.json` of a `.keras` archive, as data (JSON; nothing is executed)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"Target {path!r} is not a readable `.keras` model file ({type(error).__name__}: "
            f"{error}). Save the model with `model.save('model.keras')`."
        ) from error


def load_data_file(path, need_y=True):
    """Reads `x` (and `y`) from a `.npz` data file, with `allow_pickle=False`.

    Raises:
        ValueError: If the file is missing, not a `.npz` of plain arrays, or lacks `x` (or
            `y` when `need_y`).
    """
    import numpy as np

    if path is None:
        raise ValueError(
            "A saved-model target needs its data: pass `--data path/data.npz` (`data=` in "
            "Python) with the arrays `x` and `y` (`x` alone for `--mode predict`). "
            "Received: data=None."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(
            f"`data` must be a `.npz` file of plain arrays (read with allow_pickle=False). "
            f"Received: data={path!r} ({type(error).__name__}: {error})."
        ) from error
    missing = [k for k in (("x", "y") if need_y else ("x",)) if k not in arrays]
    if missing:
        raise ValueError(
            f"`data` must hold the arrays {missing} (`x` inputs, `y` targets; `y` may be left "
            f"out for `--mode predict`). Received: data={path!r} with arrays {sorted(arrays)}."
        )
    return arrays["x"], arrays.get("y")


# Compile settings that belong to the comparison, not to the model: each backend compiles as
# `jit_compile="auto"` says (stated in the report), one step per call, not run eagerly.
_COMPARE_COMPILE_KEYS = ("jit_compile", "run_eagerly", "steps_per_execution")


def _saved_model_spec(target, options):
    path = os.path.abspath(target)
    if not os.path.isfile(path):
        raise ValueError(f"Target {target!r}: the model file {path!r} does not exist.")
    compile_config = _read_saved_config(path).get("compile_config")
    options = options or SavedModelOptions()

    def build_model():
        import keras

        # safe_mode (the default) refuses to deserialize lambdas: loading runs no code
        # from the file.
        return keras.saving.load_model(path, compile=False, safe_mode=True)

    def make_data():
        x, y = load_data_file(options.data, need_y=False)
        if y is None:
            y = x[:, :0] if getattr(x, "ndim", 0) > 1 else x  # unused without training
        return x, y

    def make_compile_args():
        import keras

        if not compile_config:
            raise ValueError(
                f"Target {target!r}: the saved model was not compiled, so it has no loss or "
                "optimizer to train with. Compile it before `model.save(...)`, or compare "
                "its predictions only (`--mode predict`)."
            )
        args = keras.saving.deserialize_keras_object(compile_config)
        return {k: v for k, v in args.items() if k not in _COMPARE_COMPILE_KEYS}

    from xstable.training import TrainingSpec

    return TrainingSpec(
        name=os.path.basename(path)[: -len(".keras")],
        build_model=build_model,
        make_data=make_data,
        make_compile_args=make_compile_args,
        epochs=options.epochs,
        batch_size=options.batch_size,
        shuffle=options.shuffle,
        seed=0,
        description=f"saved model {os.path.basename(path)}"
        + (f", data {os.path.basename(options.data)}" if options.data else ""),
    )


def load_spec(target, saved_model=None):
    """Resolves one target string to a `TrainingSpec`.

    Args:
        target: str, `module:function`, `path/to/file.py:function`,
            `<scenario id>/<variant kind>`, or `path/to/model.keras`.
        saved_model: `SavedModelOptions` for a `.keras` target (its data, epochs, batch size).

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
    if is_saved_model_target(target):
        return _saved_model_spec(target, saved_model)
    if ":" in target:
        return _load_user_spec(target)
    _, variant = _scenario_variant(target)
    return variant.spec()


def target_settings(target):
    """Returns run settings a target carries besides its spec.

    Returns:
        A dict, empty for spec targets; for seed scenarios
        `scenario`, `variant`, `claim` and `expected` (outcome per backend).
    """
    if ":" in target or is_saved_model_target(target):
        return {}
    scenario, variant = _scenario_variant(target)
    return {
        "scenario": scenario.id,
        "variant": variant.kind,
        "claim": scenario.claim,
        "expected": dict(variant.expected[0]),
    }


def initial_weights_for(target, spec):
    """Builds the initial weights every backend starts a target from (on the active backend).

    Seed scenarios draw their Dense kernels with NumPy (`xstable.scenarios`), so the compare
    run starts where `python -m xstable.scenarios run` does; other targets take the weights
    the spec's model gets on this backend with `spec.seed`.

    Returns:
        A list of NumPy arrays in `model.weights` order.
    """
    import numpy as np

    if ":" not in target and not is_saved_model_target(target):
        from xstable.scenarios.initial_weights import portable_weights_for_spec

        return portable_weights_for_spec(spec)
    return [np.asarray(w) for w in spec.seeded_model().get_weights()]


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

"""The data-parallel scenarios every worker runs, and the single-device reference run.

Imported by the workers after they have configured their devices and backend. A scenario
trains a tiny model for `STEPS` steps of `GLOBAL_BATCH` rows with `shuffle=False`; with
`REPLICAS` replicas each replica gets a contiguous shard of every batch, so the NaN placed at
row `NAN_ROW` of step `NAN_STEP` lies in the last replica's shard only (the TF worker checks
this with `experimental_distribute_dataset`).
"""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np

from tests.distributed._launch import REPLICAS

__all__ = [
    "CASES",
    "GLOBAL_BATCH",
    "NAN_ROW",
    "NAN_STEP",
    "REPLICAS",
    "STEPS",
    "Case",
    "build_model",
    "make_data",
    "run_single_device",
]

GLOBAL_BATCH = 8
STEPS = 4
FEATURES = 3
NAN_STEP = 1
NAN_ROW = GLOBAL_BATCH - 2
SEED = 1337


def make_data(poison=None):
    """Returns `(x, y)` float32 arrays; `poison` is `None`, `"x"` or `"y"` (where the NaN goes)."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(STEPS * GLOBAL_BATCH, FEATURES)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(len(x), 1))).astype(
        "float32"
    )
    row = NAN_STEP * GLOBAL_BATCH + NAN_ROW
    if poison == "x":
        x[row, 1] = np.nan
    elif poison == "y":
        y[row, 0] = np.nan
    elif poison is not None:
        raise ValueError(f"`poison` must be None, 'x' or 'y'. Received: poison={poison!r}.")
    return x, y


def build_model(middle_layer=None, first_layer=None):
    """Input(3) -> [first_layer] -> Dense(4, tanh) -> [middle_layer] -> Dense(1), seeded."""
    keras.utils.set_random_seed(SEED)
    layers = [keras.Input((FEATURES,))]
    if first_layer is not None:
        layers.append(first_layer)
    layers.append(keras.layers.Dense(4, activation="tanh"))
    if middle_layer is not None:
        layers.append(middle_layer)
    layers.append(keras.layers.Dense(1))
    return keras.Sequential(layers)


@dataclasses.dataclass
class Case:
    """One scenario: what to train and which counters to read afterwards.

    Attributes:
        name: Key in the worker's result.
        poison: Where the NaN goes: `None`, `"x"` or `"y"`.
        make_optimizer: Builds a fresh optimizer.
        make_loss: Builds a fresh loss (or returns a name).
        make_middle_layer: Builds an optional layer between the two Dense layers.
        make_first_layer: Builds an optional layer before the first Dense layer.
        metrics: `metrics(loss)` returns the metrics to compile with.
        counters: `counters(model)` returns `{label: keras.Variable}` to read per replica.
        readouts: `readouts(model)` returns `{label: tensor}` read once after training, as a
            user would (e.g. a metric's `result()`).
    """

    name: str
    poison: str | None
    make_optimizer: Callable
    make_loss: Callable = lambda: "mse"
    make_middle_layer: Callable | None = None
    make_first_layer: Callable | None = None
    metrics: Callable = lambda loss: []
    counters: Callable = lambda model: {"iterations": model.optimizer.iterations}
    readouts: Callable = lambda model: {}


def _guarded_counters(model):
    optimizer = model.optimizer
    return {
        "iterations": optimizer.iterations,
        "skipped_steps": optimizer.skipped_steps,
        "consecutive_skips": optimizer.consecutive_skips,
    }


def _guarded_adam():
    from xstable.optimizers import GuardedOptimizer

    # global_clipnorm below the gradient norm (about 1 to 2 here), so the clip is active and
    # must be computed on the global gradient to match the single-device run.
    return GuardedOptimizer(keras.optimizers.Adam(0.05), global_clipnorm=0.5)


def _safe_mse():
    from xstable.losses import SafeLoss

    return SafeLoss("mse")


def _safe_loss_readouts(model):
    return {"nonfinite_count": model.loss.nonfinite_counter.result()}


def _finite_check(policy):
    def make():
        from xstable.layers import FiniteCheck

        return FiniteCheck(policy=policy, name="input_check")

    return make


def _finite_check_counter(model):
    return {"nonfinite_count": model.get_layer("input_check").nonfinite_count}


CASES = {
    case.name: case
    for case in (
        Case("plain_clean", None, lambda: keras.optimizers.Adam(0.05)),
        Case("plain_nan", "x", lambda: keras.optimizers.Adam(0.05)),
        Case(
            "loss_scale_nan",
            "x",
            lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.05)),
            counters=lambda model: {"iterations": model.optimizer.iterations},
        ),
        Case("guarded_clean", None, _guarded_adam, counters=_guarded_counters),
        Case("guarded_nan", "x", _guarded_adam, counters=_guarded_counters),
        # FiniteCheck on the input: the NaN value is replaced by 0 before the first Dense.
        Case(
            "finite_check_replace",
            "x",
            lambda: keras.optimizers.Adam(0.05),
            make_first_layer=_finite_check("replace"),
            counters=_finite_check_counter,
            # convert_to_tensor: under a TF strategy scope `.value` is a mirrored variable
            # that NumPy cannot read.
            readouts=lambda model: {
                "nonfinite_count": keras.ops.convert_to_tensor(
                    _finite_check_counter(model)["nonfinite_count"]
                )
            },
        ),
        Case(
            "finite_check_count",
            "x",
            lambda: keras.optimizers.Adam(0.05),
            make_first_layer=_finite_check("count"),
            counters=_finite_check_counter,
        ),
        # A NaN label: SafeLoss drops that sample from the mean and counts it.
        Case(
            "safe_loss_nan",
            "y",
            lambda: keras.optimizers.Adam(0.05),
            make_loss=_safe_mse,
            metrics=lambda loss: loss.metrics,
            readouts=_safe_loss_readouts,
        ),
    )
}


def train(case, initial_weights=None, fit_kwargs=None):
    """Builds, compiles and fits `case`'s model; returns `(model, history_dict, initial)`."""
    model = build_model(
        case.make_middle_layer() if case.make_middle_layer else None,
        case.make_first_layer() if case.make_first_layer else None,
    )
    if initial_weights is not None:
        model.set_weights(initial_weights)
    initial = [np.array(w) for w in model.get_weights()]
    loss = case.make_loss()
    model.compile(optimizer=case.make_optimizer(), loss=loss, metrics=case.metrics(loss))
    x, y = make_data(case.poison)
    history = model.fit(
        x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0, **(fit_kwargs or {})
    )
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}, initial


def flat(arrays):
    """Concatenates arrays into one float64 list (JSON-friendly)."""
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays]).tolist()


def run_single_device(case):
    """The reference: `case` trained without any distribution. Returns (result, initial)."""
    model, history, initial = train(case)
    result = {
        "weights": flat([keras.ops.convert_to_numpy(v.value) for v in model.trainable_weights]),
        "counters": {
            label: float(keras.ops.convert_to_numpy(variable.value))
            for label, variable in case.counters(model).items()
        },
        "history": history,
        "readouts": _read(case.readouts(model)),
    }
    return result, initial


def run_distributed(case, initial, replica_values, fit_kwargs=None):
    """Trains `case` from `initial` weights under the active distribution.

    Args:
        case: The `Case`.
        initial: Initial weights from the single-device run.
        replica_values: `replica_values(keras_variable)` returns one NumPy array per replica.

    Returns:
        Dict with per-replica flat weights, per-replica counters and the history.
    """
    model, history, _ = train(case, initial, fit_kwargs)
    per_variable = [replica_values(v) for v in model.trainable_weights]
    replicas = len(per_variable[0])
    return {
        "replica_weights": [flat([values[r] for values in per_variable]) for r in range(replicas)],
        "counters": {
            label: [float(np.asarray(v)) for v in replica_values(variable)]
            for label, variable in case.counters(model).items()
        },
        "history": history,
        "readouts": _read(case.readouts(model)),
    }


def _read(tensors):
    return {label: float(keras.ops.convert_to_numpy(t)) for label, t in tensors.items()}


def run_all(cases, distributed_scope, replica_values, fit_kwargs=None):
    """Runs each case single-device, then distributed; catches per-case errors.

    Args:
        cases: Iterable of `Case`.
        distributed_scope: Context-manager factory under which the distributed model is
            built, compiled and fitted.
        replica_values: See `run_distributed`.

    Returns:
        `{case name: {"single": ..., "distributed": ...}}`; a failing part holds
        `{"error": "<type>: <message>"}` instead.
    """
    results = {}
    for case in cases:
        single, initial = run_single_device(case)
        try:
            with distributed_scope():
                distributed = run_distributed(case, initial, replica_values, fit_kwargs)
        except Exception as error:  # the tests report it; other cases still run
            distributed = {"error": f"{type(error).__name__}: {error}"[:3000]}
        results[case.name] = {"single": single, "distributed": distributed}
    return results

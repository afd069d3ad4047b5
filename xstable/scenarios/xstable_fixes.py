"""The xstable fixes: what `xstable.diagnose` recommends for a failing spec, applied to it.

The documents fix their failures outside the model (scikit-learn scalers, pandas filters,
another learning rate). An xstable fix starts from the setting that goes non-finite (the
scenario's stress variant) and applies, as one declared `XstableFix`, the fixes that
`diagnose()` gives for it, inside the model where they belong there:

- `auto_scale`: `AutoScale` first in the model (findings `input-outlier`,
  `feature-scale-spread`, `saturated-activation`, `sgd-step-too-large` on large inputs);
- `logits`: a linear output with `keras.losses.BinaryCrossentropy(from_logits=True)`
  (`custom-loss` of a sigmoid output, `probability-output-crossentropy`);
- `start_at_trivial`: the model starts at the trivial predictor, through a
  `keras.layers.Rescaling(std(y), mean(y))` output for regression, or for classification an
  output layer whose kernel starts at zero and whose bias is the label prior's logit, so that
  every row starts at the prior's loss exactly (`output-far-from-targets`);
- `learning_rate`: the rate `diagnose` suggests (`learning-rate-too-large`,
  `sgd-step-too-large`), same optimizer;
- `guard`: the optimizer wrapped in `GuardedOptimizer(**guard)` (the same findings).

One builder, `apply_fix`, turns a spec and an `XstableFix` into the fixed spec.
"""

import dataclasses

import keras
import numpy as np

from xstable.layers import AutoScale
from xstable.optimizers import GuardedOptimizer
from xstable.training import TrainingSpec

__all__ = ["XstableFix", "apply_fix", "fix_variant", "GUARD"]

# The guard every optimizer finding's example uses: clip the global norm to 1 and skip every
# non-finite step (no limit on skips in a row, the default).
GUARD = {"global_clipnorm": 1.0}
# Probabilities of the prior are kept this far from 0 and 1, so that its logit exists.
_PRIOR_MARGIN = 1e-7


@dataclasses.dataclass(frozen=True)
class XstableFix:
    """The fixes `diagnose()` recommends for one failing spec, as data.

    Args:
        answers: tuple of str, the `diagnose()` finding codes this fix answers.
        auto_scale: dict or `None`, arguments of an `AutoScale` put first in the model and
            adapted on the spec's inputs (`{}`: its defaults).
        logits: bool, drop the output activation and train with Keras's binary
            cross-entropy of logits.
        start_at_trivial: bool, start the model at the trivial predictor (a `Rescaling`
            output for regression; with `logits`, a zero output kernel and the prior's logit
            as output bias).
        learning_rate: float or `None`, the optimizer's new learning rate (same optimizer).
        guard: dict or `None`, arguments of `GuardedOptimizer` wrapped around the optimizer.
    """

    answers: tuple
    auto_scale: dict | None = None
    logits: bool = False
    start_at_trivial: bool = False
    learning_rate: float | None = None
    guard: dict | None = None

    def __post_init__(self):
        if not isinstance(self.answers, tuple) or not self.answers:
            raise ValueError(
                "`answers` must be a non-empty tuple of diagnose() finding codes. "
                f"Received: answers={self.answers!r}."
            )

    def describe(self):
        """Returns one str per applied fix, for a variant's `changes`."""
        lines = []
        if self.auto_scale is not None:
            arguments = ", ".join(f"{k}={v!r}" for k, v in self.auto_scale.items())
            lines.append(
                f"xstable: `AutoScale({arguments})` adapted on x and put first in the model "
                "(diagnose: scale the inputs inside the model)"
            )
        if self.logits:
            lines.append(
                "xstable: output activation removed, loss -> `keras.losses.BinaryCrossentropy("
                "from_logits=True)` (diagnose: cross-entropy of logits, exact on every backend)"
            )
        if self.start_at_trivial:
            lines.append(
                "xstable: the model starts at the trivial predictor (diagnose "
                "`output-far-from-targets`): "
                + (
                    "output kernel = 0, output bias = logit of the label prior"
                    if self.logits
                    else "`keras.layers.Rescaling(std(y), mean(y))` after the output"
                )
            )
        if self.learning_rate is not None:
            lines.append(
                f"xstable: learning rate -> {self.learning_rate:g}, the rate diagnose suggests "
                "(a tenth of its stability scale)"
            )
        if self.guard is not None:
            arguments = ", ".join(f"{k}={v!r}" for k, v in self.guard.items())
            lines.append(f"xstable: optimizer wrapped in `GuardedOptimizer(..., {arguments})`")
        return tuple(lines)


def _check_spec(spec):
    if not isinstance(spec, TrainingSpec):
        raise TypeError(
            f"`spec` must be an `xstable.training.TrainingSpec`. Received: spec of type "
            f"{type(spec).__name__}."
        )


def _sequential_layers(model, spec):
    if not isinstance(model, keras.Sequential):
        raise TypeError(
            f"An xstable fix rebuilds a keras.Sequential model. Received: "
            f"{type(model).__name__} from spec {spec.name!r}."
        )
    return list(model.layers)


def _prior_output(output, y):
    """A copy of the `Dense` output layer that predicts the label prior for every row.

    A bias at the prior's logit alone leaves the kernel's random start, whose spread around
    that logit costs more than the prior's loss; with labels that carry little signal the
    few steps of a short run do not win it back. A zero kernel starts every row at the
    prior exactly and still learns: its gradient is `mean((p - y) * h)`.
    """
    if not isinstance(output, keras.layers.Dense):
        raise TypeError(
            "Starting a classifier at the label prior needs a `Dense` output layer. "
            f"Received: output layer of type {type(output).__name__}."
        )
    prior = float(np.clip(np.mean(y), _PRIOR_MARGIN, 1.0 - _PRIOR_MARGIN))
    config = output.get_config()
    config.update(
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(np.log(prior / (1.0 - prior))),
    )
    return keras.layers.Dense.from_config(config)


def _build_model(spec, fix):
    model = spec.build_model()
    layers = _sequential_layers(model, spec)
    x, y = spec.make_data()
    if fix.logits:
        layers[-1].activation = keras.activations.linear
    if fix.start_at_trivial and fix.logits:
        layers[-1] = _prior_output(layers[-1], y)
    if fix.auto_scale is not None:
        scale = AutoScale(**fix.auto_scale)
        scale.adapt(x)
        layers = [scale, *layers]
    if fix.start_at_trivial and not fix.logits:
        y = np.asarray(y, dtype=np.float64)
        layers.append(keras.layers.Rescaling(float(np.std(y)), float(np.mean(y))))
    return keras.Sequential([keras.Input(model.input_shape[1:]), *layers])


def _optimizer(optimizer, fix):
    optimizer = keras.optimizers.get(optimizer)
    if fix.learning_rate is not None:
        config = optimizer.get_config()
        config["learning_rate"] = fix.learning_rate
        optimizer = type(optimizer).from_config(config)
    if fix.guard is not None:
        optimizer = GuardedOptimizer(optimizer, **fix.guard)
    return optimizer


def apply_fix(spec, name, fix):
    """Returns `spec` with the fixes of `fix` applied, under a new name.

    Args:
        spec: `TrainingSpec` whose model is a `keras.Sequential` (the setting to fix).
        name: str, name of the new spec.
        fix: `XstableFix`.

    Returns:
        A new `TrainingSpec`: same data, epochs, batches and seed.

    Raises:
        TypeError: If `spec` is not a `TrainingSpec` or `fix` not an `XstableFix`, or (when
            the model is built) the model is not a `keras.Sequential`.

    Example:

    >>> fixed = apply_fix(spec, "fixed", XstableFix(("input-outlier",), auto_scale=True))
    ... # doctest: +SKIP
    """
    _check_spec(spec)
    if not isinstance(fix, XstableFix):
        raise TypeError(
            f"`fix` must be an `XstableFix`. Received: fix of type {type(fix).__name__}."
        )
    make_compile_args = spec.make_compile_args

    def compile_args():
        args = dict(make_compile_args())
        if fix.logits:
            args["loss"] = keras.losses.BinaryCrossentropy(from_logits=True)
        args["optimizer"] = _optimizer(args["optimizer"], fix)
        return args

    return dataclasses.replace(
        spec, name=name, build_model=lambda: _build_model(spec, fix), make_compile_args=compile_args
    )


def fix_variant(scenario_id, make_stress_spec, fix, common_changes, expected=None):
    """The `xstable_fix` variant of a scenario: its stress spec with `fix` applied.

    Args:
        scenario_id: str, the scenario's id; the spec is named `<id>.xstable_fix`.
        make_stress_spec: `() -> TrainingSpec`, the setting to fix (the stress variant's).
        fix: `XstableFix`.
        common_changes: tuple of str, the changes from the document's code the stress
            variant makes (kept, as the fix starts from it).
        expected: `expect(...)` result; default: `"ok"` on every backend.

    Returns:
        A `Variant` of kind `"xstable_fix"` and origin `"ours"`.
    """
    from xstable.scenarios.scenario import Variant, expect

    answered = ", ".join(f"`{code}`" for code in fix.answers)
    return Variant(
        kind="xstable_fix",
        make_spec=lambda: apply_fix(make_stress_spec(), f"{scenario_id}.xstable_fix", fix),
        summary=f"the stress case with what diagnose() recommends for it ({answered})",
        origin="ours",
        changes=tuple(common_changes) + fix.describe(),
        expected=expected if expected is not None else expect("ok"),
        fix=fix,
    )

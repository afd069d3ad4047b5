"""Seed examples declared as data, and the one builder that turns them into `Scenario`s.

A document module declares each of its code examples once, as a `SeedExample`: what every
variant trains (`Setting`: model, data, optimizer, loss, epochs), what it changes from the
document's code, and the outcome expected on each backend. `build_scenarios` is the only code
that turns those declarations into `Scenario`, `Variant` and `TrainingSpec` objects.
"""

import dataclasses
from collections.abc import Callable

import keras

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios.scenario import Scenario, Variant
from xstable.training import TrainingSpec

__all__ = ["Case", "DenseStack", "FixCase", "SeedExample", "Setting", "build_scenarios"]


@dataclasses.dataclass(frozen=True)
class DenseStack:
    """A `keras.Sequential` of `Dense` layers on a flat input, as data.

    Args:
        input_dim: int, number of input features.
        layers: tuple of `(units, activation)` pairs, one per `Dense` layer, in order
            (`activation=None`: linear).
        output_bias: float or `None`, a value assigned to the last layer's bias once the model
            is built (as a document does by hand); `None` keeps Keras's zeros.
    """

    input_dim: int
    layers: tuple
    output_bias: float | None = None

    def build(self):
        """Returns a fresh, uncompiled model that starts with `keras.Input((input_dim,))`."""
        model = keras.Sequential(
            [
                keras.Input((self.input_dim,)),
                *(keras.layers.Dense(units, activation=act) for units, act in self.layers),
            ]
        )
        if self.output_bias is not None:
            model.layers[-1].bias.assign([self.output_bias])
        return model


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one variant trains: model, data, optimizer, loss and epochs.

    Args:
        model: `DenseStack`.
        data: `() -> (x, y)`, deterministic NumPy arrays.
        epochs: int, passes over the data (batches of 32 rows, shuffled in a pinned order).
        optimizer: str, passed to `compile` as is (Keras's defaults, as a document writes
            `optimizer="adam"`), or a `(class name, keyword arguments)` pair such as
            `("SGD", {"learning_rate": 0.01})` for `keras.optimizers.SGD(learning_rate=0.01)`.
        loss: str or callable, as passed to `compile`.
        name: str or `None`, the spec's name where two examples share this setting (it is
            then trained once); `None`: `"<example id>.<variant kind>"`.
    """

    model: DenseStack
    data: Callable[[], tuple]
    epochs: int
    optimizer: str | tuple = "adam"
    loss: object = "mse"
    name: str | None = None

    def replace(self, **changes):
        """Returns a copy with `changes` applied; its `name` only where `changes` gives one.

        A variant that differs from another in a field or two is declared as that change.
        """
        changes.setdefault("name", None)
        return dataclasses.replace(self, **changes)

    def compile_args(self):
        """Returns fresh `compile` arguments (an optimizer holds state, so one per run)."""
        optimizer = self.optimizer
        if not isinstance(optimizer, str):
            class_name, arguments = optimizer
            optimizer = getattr(keras.optimizers, class_name)(**arguments)
        return {"optimizer": optimizer, "loss": self.loss}

    def spec(self, name):
        """Returns the `TrainingSpec` of this setting, named `name` unless it has its own."""
        return TrainingSpec(
            name=self.name or name,
            build_model=self.model.build,
            make_data=self.data,
            make_compile_args=self.compile_args,
            epochs=self.epochs,
            seed=p.WEIGHT_SEED,
        )


@dataclasses.dataclass(frozen=True)
class Case:
    """One variant of a seed example: its setting and what it says about it.

    Args:
        setting: `Setting`, what the variant trains.
        summary: str, one line saying what this variant does.
        origin: str, one of `xstable.scenarios.scenario.ORIGINS`.
        expected: `expect(...)` result, the outcome per backend.
        changes: tuple of str, changes from the document's code beyond the example's own.
    """

    setting: Setting
    summary: str
    origin: str
    expected: tuple
    changes: tuple = ()


@dataclasses.dataclass(frozen=True)
class FixCase:
    """The `xstable_fix` variant of a seed example: its stress setting with `fix` applied.

    Args:
        fix: `xstable.scenarios.xstable_fixes.XstableFix`.
        changes: tuple of str, changes from the document's code beyond the example's own,
            kept from the stress setting.
        expected: `expect(...)` result; `None`: `"ok"` on every backend.
    """

    fix: fixes.XstableFix
    changes: tuple = ()
    expected: tuple | None = None


@dataclasses.dataclass(frozen=True)
class SeedExample:
    """One code example of a seed document, declared once.

    Args:
        id: str, the scenario's id, `<topic>.<case>`.
        number: int, the example's number in the document (1-based).
        claim: str, the document's claim about it, in one line.
        claimed_outcome: str, `"nan"`, `"ok"` or `"unstable"` (see `Scenario`).
        changes: tuple of str, changes from the document's code every variant makes.
        failure: `Case`.
        document_fix: `Case`.
        stress: `Case` or `None`.
        xstable_fix: `FixCase` or `None` (it needs a `stress` case).
        no_stress_reason: str, see `Scenario`.
        xstable_fix_note: str, see `Scenario`.
    """

    id: str
    number: int
    claim: str
    claimed_outcome: str
    changes: tuple
    failure: Case
    document_fix: Case
    stress: Case | None = None
    xstable_fix: FixCase | None = None
    no_stress_reason: str = ""
    xstable_fix_note: str = ""

    def __post_init__(self):
        if self.xstable_fix is not None and self.stress is None:
            raise ValueError(
                f"Example {self.id!r} declares an `xstable_fix` without a `stress` case; the "
                "xstable fix starts from the stress setting. Received: stress=None."
            )


def _variant(example, kind, case):
    return Variant(
        kind=kind,
        make_spec=lambda: case.setting.spec(f"{example.id}.{kind}"),
        summary=case.summary,
        origin=case.origin,
        changes=example.changes + case.changes,
        expected=case.expected,
    )


def _build(example, document, title):
    variants = {"failure": _variant(example, "failure", example.failure)}
    if example.stress is not None:
        variants["stress"] = _variant(example, "stress", example.stress)
    variants["document_fix"] = _variant(example, "document_fix", example.document_fix)
    if example.xstable_fix is not None:
        stress = variants["stress"].make_spec
        # Named after the stress setting it fixes: examples sharing one train it once.
        stress_name = example.stress.setting.name or f"{example.id}.stress"
        variants["xstable_fix"] = fixes.fix_variant(
            stress_name.removesuffix(".stress"),
            stress,
            example.xstable_fix.fix,
            example.changes + example.xstable_fix.changes,
            example.xstable_fix.expected,
        )
    return Scenario(
        id=example.id,
        document=document,
        title=title,
        example=example.number,
        claim=example.claim,
        claimed_outcome=example.claimed_outcome,
        variants=variants,
        no_stress_reason=example.no_stress_reason,
        xstable_fix_note=example.xstable_fix_note,
    )


def build_scenarios(document, title, examples):
    """Returns one `Scenario` per declared example, in the given order.

    Args:
        document: str, file name of the seed document.
        title: str, its title.
        examples: iterable of `SeedExample`.

    Returns:
        A list of `Scenario`.

    Raises:
        TypeError: If an item of `examples` is not a `SeedExample`.
    """
    scenarios = []
    for example in examples:
        if not isinstance(example, SeedExample):
            raise TypeError(
                f"`examples` must hold `SeedExample`s. Received: an item of type "
                f"{type(example).__name__}."
            )
        scenarios.append(_build(example, document, title))
    return scenarios

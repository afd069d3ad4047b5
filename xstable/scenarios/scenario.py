"""`Scenario` and `Variant`: one seed-document code example and the ways we run it."""

import dataclasses
from collections.abc import Callable, Mapping

from xstable.training import TrainingSpec
from xstable.training.run_result import OUTCOMES

__all__ = ["Scenario", "Variant", "VARIANT_KINDS", "ORIGINS", "BACKENDS", "expect"]

# The order in which variants are run and shown.
VARIANT_KINDS = ("failure", "stress", "document_fix", "xstable_fix")
# Where a variant's code comes from: the document's code as written (ported), the document's
# code with its fix removed or its prose suggestion applied (derived), or our own (ours).
ORIGINS = ("document", "derived", "ours")
BACKENDS = ("tensorflow", "torch", "jax")


def expect(outcome=None, reason="", **per_backend):
    """Builds the expected outcome of a variant on every backend.

    Args:
        outcome: str, one of `xstable.training.OUTCOMES` (`"ok"`, `"stalled"`,
            `"exploded"`, `"nan"`): the outcome on every backend not named in `per_backend`.
            `None` if every backend is named.
        reason: str, why backends differ (required when they do).
        **per_backend: str outcomes keyed by backend name (`tensorflow`, `torch`, `jax`).

    Returns:
        A `(dict, str)` pair: outcome per backend, and the reason.

    Raises:
        ValueError: If an outcome or backend name is unknown, a backend has no outcome, or
            backends differ and `reason` is empty.

    Example:

    >>> expect("nan", torch="ok", reason="torch clamps log at -100")[0]["torch"]
    'ok'
    """
    unknown = set(per_backend) - set(BACKENDS)
    if unknown:
        raise ValueError(
            f"Unknown backend names {sorted(unknown)}. Use some of {list(BACKENDS)}. "
            f"Received: {sorted(per_backend)}."
        )
    outcomes = {backend: per_backend.get(backend, outcome) for backend in BACKENDS}
    for backend, value in outcomes.items():
        if value not in OUTCOMES:
            raise ValueError(
                f"The expected outcome on {backend} must be one of {list(OUTCOMES)}. "
                f"Received: outcome={value!r}."
            )
    if len(set(outcomes.values())) > 1 and not reason.strip():
        raise ValueError(
            "Backends are expected to differ, so `reason` must say why. "
            f"Received: outcomes={outcomes}, reason={reason!r}."
        )
    return outcomes, reason


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way of running a scenario: the document's failure, its fix, ours, or a stress case.

    Args:
        kind: str, one of `VARIANT_KINDS`.
        make_spec: `() -> TrainingSpec`, a fresh spec on every call.
        summary: str, one line saying what this variant does.
        origin: str, one of `ORIGINS`: `"document"` (the document's code, ported),
            `"derived"` (the document's code with its fix removed, or its prose suggestion
            turned into code) or `"ours"` (not in the document).
        changes: tuple of str, every change from the document's code and why it was made.
        expected: `(outcomes, reason)` from `expect(...)`: the outcome measured when this
            variant was written, per backend, and why backends differ if they do.
        fix: for an `xstable_fix` variant, the `xstable.scenarios.xstable_fixes.XstableFix`
            it applies (the diagnose() findings it answers and how); `None` otherwise.
    """

    kind: str
    make_spec: Callable[[], TrainingSpec]
    summary: str
    origin: str
    changes: tuple
    expected: tuple
    fix: object = None

    def __post_init__(self):
        if self.kind not in VARIANT_KINDS:
            raise ValueError(
                f"`kind` must be one of {list(VARIANT_KINDS)}. Received: kind={self.kind!r}."
            )
        if self.origin not in ORIGINS:
            raise ValueError(
                f"`origin` must be one of {list(ORIGINS)}. Received: origin={self.origin!r}."
            )
        if not callable(self.make_spec):
            raise TypeError(
                "`make_spec` must be a callable returning a `TrainingSpec`. "
                f"Received: make_spec of type {type(self.make_spec).__name__}."
            )
        if not isinstance(self.changes, tuple):
            raise TypeError(
                f"`changes` must be a tuple of str. Received: changes of type "
                f"{type(self.changes).__name__}."
            )

    def expected_outcome(self, backend):
        """Returns the outcome this variant is expected to have on `backend`."""
        outcomes, _ = self.expected
        if backend not in outcomes:
            raise ValueError(
                f"No expectation for backend {backend!r}; known: {list(outcomes)}. "
                f"Received: backend={backend!r}."
            )
        return outcomes[backend]

    @property
    def expected_reason(self):
        """Why the expected outcome differs between backends (empty if it does not)."""
        return self.expected[1]

    def spec(self):
        """Returns a fresh `TrainingSpec` for this variant."""
        spec = self.make_spec()
        if not isinstance(spec, TrainingSpec):
            raise TypeError(
                f"`make_spec` of the {self.kind!r} variant returned "
                f"{type(spec).__name__}, not a `TrainingSpec`."
            )
        return spec


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One code example of a seed document, with its claim and the variants we run.

    Args:
        id: str, unique identifier, `<topic>.<case>` (e.g. `"linear_fit.unscaled"`).
        document: str, file name of the seed document (the article it ports).
        title: str, the document's title.
        example: int, number of the code example in the document (1-based, as it numbers it).
        claim: str, the document's claim about this example, in one line of our own words.
        claimed_outcome: str, what the document says the example does: `"nan"` (its code
            goes NaN), `"ok"` (its code is a fix that trains), or `"unstable"` (it says the
            setting risks instability without saying NaN).
        variants: Mapping from kind to `Variant`.
        no_stress_reason: str, for a failure that stays finite on every backend and has no
            `stress` variant: what was searched without finding a non-finite variant.
        xstable_fix_note: str, where the `xstable_fix` does not end `ok` or at or below the
            document fix: why, in one or two sentences (shown under the summary table).
    """

    id: str
    document: str
    title: str
    example: int
    claim: str
    claimed_outcome: str
    variants: Mapping[str, Variant]
    no_stress_reason: str = ""
    xstable_fix_note: str = ""

    def __post_init__(self):
        if self.claimed_outcome not in ("nan", "ok", "unstable"):
            raise ValueError(
                "`claimed_outcome` must be 'nan', 'ok' or 'unstable'. "
                f"Received: claimed_outcome={self.claimed_outcome!r}."
            )
        for kind, variant in self.variants.items():
            if kind != variant.kind:
                raise ValueError(
                    f"Variant registered under {kind!r} says kind={variant.kind!r}; "
                    "register each variant under its own kind."
                )
        for required in ("failure", "document_fix"):
            if required not in self.variants:
                raise ValueError(
                    f"Scenario {self.id!r} needs a {required!r} variant. "
                    f"Received variants: {list(self.variants)}."
                )

    @property
    def diverged_threshold(self):
        """`None`: runs are judged against the trivial predictor's loss by `run_spec` itself.

        Kept for callers written for the former `"diverged"` threshold (`xstable compare`).
        """
        return None

    def variant(self, kind):
        """Returns the `Variant` of the given kind.

        Raises:
            KeyError: If this scenario has no such variant; the message lists the ones it has.
        """
        if kind not in self.variants:
            raise KeyError(
                f"Scenario {self.id!r} has no {kind!r} variant; it has "
                f"{[k for k in VARIANT_KINDS if k in self.variants]}."
            )
        return self.variants[kind]

    def variant_kinds(self):
        """Returns the kinds of this scenario's variants in `VARIANT_KINDS` order."""
        return tuple(k for k in VARIANT_KINDS if k in self.variants)

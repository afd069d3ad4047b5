"""`RunResult`: what one training run measured, as plain data that serializes to JSON."""

import dataclasses
import math

from xstable.training.outcome import OUTCOMES

__all__ = ["RunResult", "OUTCOMES"]

_FLOAT_FIELDS = ("losses", "final_loss", "trivial_loss")


@dataclasses.dataclass
class RunResult:
    """Measured outcome of one training run on one backend.

    Attributes:
        name: The spec's name.
        losses: Loss of every step, in order (`nan`/`inf` kept as such).
        steps_per_epoch: Number of steps in each epoch.
        first_nonfinite_step: Index into `losses` of the first non-finite loss, or `None`.
        first_nonfinite_epoch: Epoch (0-based) of that step, or `None`.
        first_nonfinite_batch: Batch within that epoch (0-based), or `None`.
        final_loss: Loss on every training row after the last step (`model.evaluate`), or
            the last step's loss when the run went non-finite.
        weights_finite: Whether every weight was finite when the run ended.
        outcome: One of `OUTCOMES`, from `classify_outcome(final_loss, trivial_loss)`:
            `"ok"` (below the trivial loss: the model learned), `"stalled"` (not below it),
            `"exploded"` (far above it) or `"nan"` (a loss or weight went non-finite).
        trivial_loss: Loss of the trivial predictor (target mean, label prior) on the same
            rows with the same loss (`None`: unknown, so learning was not judged).
        backend, device, versions: Where it ran (`xstable.library_versions()`).
        seed: Seed of weights and batch order.
        jit_compile: The compile mode passed to `model.compile`.
        wall_time_s: Seconds spent training (excluding model building).
        stopped_early: Whether training stopped at the first non-finite loss.
        extra: Free-form measurements added by callers (e.g. a NaN location).
    """

    name: str
    losses: list
    steps_per_epoch: list
    first_nonfinite_step: int | None
    first_nonfinite_epoch: int | None
    first_nonfinite_batch: int | None
    final_loss: float
    weights_finite: bool
    outcome: str
    trivial_loss: float | None
    backend: str
    device: str
    versions: dict
    seed: int
    jit_compile: object
    wall_time_s: float
    stopped_early: bool
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        """Returns a JSON-serializable dict; non-finite floats become the strings "nan"/"inf"."""
        return {k: _jsonable(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        """Rebuilds a `RunResult` from `to_dict()` output."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        # Only the float fields can hold the "nan"/"inf" strings that stand for non-finite
        # floats; `outcome` is the string "nan" and must stay one.
        for key in _FLOAT_FIELDS:
            if key in values:
                values[key] = _from_jsonable(values[key])
        return cls(**values)


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_jsonable(value):
    if value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value

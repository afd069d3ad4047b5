"""Tolerances that decide when two backends "part ways", with the measurements behind them."""

import dataclasses
import math

__all__ = [
    "Tolerances",
    "DEFAULT_TOLERANCES",
    "relative_deviation",
    "tensor_deviation",
    "tensors_differ",
]


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """When a difference between backends counts as a divergence.

    A step's losses `a` (reference) and `b` differ when `|a - b| > loss_atol + loss_rtol *
    max(|a|, |b|)`, or when exactly one of them is non-finite. At the first such step, each
    layer output and gradient is compared on identical weights and data: a tensor differs when
    `max|a - b| > tensor_atol + tensor_rtol * max|a|` (max over the tensor), or when their
    non-finite entries differ.

    The defaults come from measurement (docs/compare.md, "Choosing the tolerances"): on the
    benign specs and seed fix variants, float32 training on CPU with TF32 off kept the per-step
    relative loss deviation between backends below 1e-4 for up to a few hundred steps, while the
    real backend differences (cross-entropy on saturated probabilities, batch variance of
    large-mean inputs on torch) deviate by 1e-1 or more at the step where they
    occur. `loss_rtol=1e-3` sits an order of magnitude above the noise and two below the
    divergences; `tensor_rtol=1e-4` is about 1000 float32 ulps on identical inputs.

    Args:
        loss_rtol: float, relative tolerance on per-step losses.
        loss_atol: float, absolute tolerance on per-step losses (guards losses near zero,
            where a relative deviation of rounding noise is large).
        tensor_rtol: float, relative tolerance on layer outputs and gradients, relative to
            the largest magnitude of the reference tensor.
        tensor_atol: float, absolute tolerance on layer outputs and gradients.
    """

    loss_rtol: float = 1e-3
    loss_atol: float = 1e-6
    tensor_rtol: float = 1e-4
    tensor_atol: float = 1e-6

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(
                    f"`{field.name}` must be a float. Received: {field.name}={value!r}."
                )
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"`{field.name}` must be finite and non-negative. "
                    f"Received: {field.name}={value!r}."
                )

    def losses_differ(self, reference, other):
        """Returns whether two losses of one step differ beyond the tolerance."""
        ref_finite, other_finite = math.isfinite(reference), math.isfinite(other)
        if ref_finite != other_finite:
            return True
        if not ref_finite:
            return False  # Both non-finite: the runs agree that the step failed.
        scale = max(abs(reference), abs(other))
        return abs(reference - other) > self.loss_atol + self.loss_rtol * scale


DEFAULT_TOLERANCES = Tolerances()


def relative_deviation(reference, other):
    """Returns `|a - b| / max(|a|, |b|)`: 0 for equal values, `inf` if one is non-finite."""
    if not (math.isfinite(reference) and math.isfinite(other)):
        return 0.0 if (math.isnan(reference) and math.isnan(other)) else math.inf
    scale = max(abs(reference), abs(other))
    return 0.0 if scale == 0 else abs(reference - other) / scale


def tensor_deviation(reference, other):
    """Returns `max|a - b| / max|a|` of two NumPy arrays (`inf` on mismatched non-finites).

    Args:
        reference: NumPy array from the reference backend.
        other: NumPy array of the same shape from another backend.

    Returns:
        `(deviation, max_abs_difference, max_abs_reference)` as floats.
    """
    import numpy as np

    reference = np.asarray(reference, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if reference.shape != other.shape:
        return math.inf, math.inf, math.nan
    if reference.size == 0:
        return 0.0, 0.0, 0.0
    ref_bad, other_bad = ~np.isfinite(reference), ~np.isfinite(other)
    if (ref_bad != other_bad).any():
        return math.inf, math.inf, float(np.nanmax(np.abs(np.where(ref_bad, 0, reference))))
    both = ~ref_bad
    if not both.any():
        return 0.0, 0.0, math.nan
    difference = float(np.max(np.abs(reference[both] - other[both])))
    scale = float(np.max(np.abs(reference[both])))
    deviation = difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)
    return deviation, difference, scale


def tensors_differ(tolerances, reference, other):
    """Returns `(differs, deviation)` for two arrays under `tolerances`."""
    deviation, difference, scale = tensor_deviation(reference, other)
    if math.isinf(difference):
        return True, deviation
    limit = tolerances.tensor_atol + tolerances.tensor_rtol * (scale if math.isfinite(scale) else 0)
    return difference > limit, deviation

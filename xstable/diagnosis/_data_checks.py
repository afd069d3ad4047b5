"""Data checks for diagnose: NaN/Inf, feature scales, outliers, constant features, targets.

Every check takes a 2-D float64 matrix (rows x features; trailing dimensions flattened) and
returns `Finding`s. Statistics use finite values only, so one NaN does not hide the rest.
"""

import math

import numpy as np

from xstable.diagnosis.findings import Finding

__all__ = [
    "OUTLIER_Z",
    "SCALE_SPREAD_RATIO",
    "UNSCALED_MAGNITUDE",
    "FeatureStats",
    "feature_stats",
    "check_nonfinite",
    "check_constant_features",
    "check_scale_spread",
    "check_outliers",
    "check_target_range",
    "check_sparse_labels",
]

# A value this many robust standard deviations (1.4826 * MAD) from the median is an outlier.
# 10 is far beyond what a normal sample of 10^9 rows produces (about 6.1), so a hit is a
# real outlier, not a tail.
OUTLIER_Z = 10.0
# At this robust z the value is almost surely a data error (e.g. a sentinel like 1e10).
SEVERE_OUTLIER_Z = 1e6
# Features whose typical magnitudes (95th percentile of |x|) differ by this factor or more.
SCALE_SPREAD_RATIO = 100.0
# Typical magnitude above which inputs count as unscaled (saturates sigmoid/tanh units).
UNSCALED_MAGNITUDE = 10.0
_MAX_LISTED = 10

AUTOSCALE_FIX = "xstable.layers.AutoScale"
AUTOSCALE_EXAMPLE = (
    "scale = xstable.layers.AutoScale(); scale.adapt(x); "
    "model = keras.Sequential([keras.Input(x.shape[1:]), scale, *model.layers])"
)


class FeatureStats:
    """Per-feature statistics of the finite values of one array."""

    def __init__(self, name, matrix):
        self.name = name
        finite = np.isfinite(matrix)
        masked = np.where(finite, matrix, np.nan)
        self.finite_count = finite.sum(axis=0)
        usable = self.finite_count > 0
        with np.errstate(all="ignore"):
            # Columns with no finite value give NaN statistics; they are reported separately.
            safe = np.where(usable[None, :], masked, 0.0)
            self.median = np.nanmedian(safe, axis=0) if safe.size else np.zeros(0)
            self.mad = np.nanmedian(np.abs(safe - self.median), axis=0) if safe.size else 0
            self.mean_abs_dev = np.nanmean(np.abs(safe - self.median), axis=0)
            self.minimum = np.nanmin(safe, axis=0)
            self.maximum = np.nanmax(safe, axis=0)
            self.magnitude = np.nanpercentile(np.abs(safe), 95, axis=0)
        self.usable = usable
        self.constant = usable & (self.maximum == self.minimum)

    @property
    def num_features(self):
        return int(self.finite_count.shape[0])

    def label(self, feature):
        return self.name if self.num_features == 1 else f"{self.name}[:, {feature}]"

    @property
    def typical_magnitude(self):
        varying = self.usable & ~self.constant
        values = self.magnitude[varying] if varying.any() else self.magnitude[self.usable]
        return float(values.max()) if values.size else 0.0


def feature_stats(name, matrix):
    """Returns `FeatureStats` for a 2-D float64 matrix."""
    return FeatureStats(name, matrix)


def _first(indices):
    return [int(i) for i in indices[:_MAX_LISTED]]


def check_nonfinite(name, matrix, role):
    """NaN or Inf anywhere in `matrix`. `role` is "input", "target" or "sample_weight"."""
    nan = np.isnan(matrix)
    posinf = np.isposinf(matrix)
    neginf = np.isneginf(matrix)
    bad = nan | posinf | neginf
    if not bad.any():
        return []
    rows = np.flatnonzero(bad.any(axis=1))
    features = np.flatnonzero(bad.any(axis=0))
    all_bad_features = np.flatnonzero(bad.all(axis=0))
    evidence = {
        "nan": int(nan.sum()),
        "posinf": int(posinf.sum()),
        "neginf": int(neginf.sum()),
        "rows_affected": int(rows.size),
        "rows_total": int(matrix.shape[0]),
        "first_rows": _first(rows),
        "features_affected": _first(features),
    }
    if all_bad_features.size:
        evidence["features_without_any_finite_value"] = _first(all_bad_features)
    code = {"input": "nonfinite-input", "target": "nonfinite-target"}.get(role, "nonfinite-weight")
    return [
        Finding(
            code=code,
            severity="error",
            title=(
                f"`{name}` holds {evidence['nan']} NaN and "
                f"{evidence['posinf'] + evidence['neginf']} Inf values in {rows.size} of "
                f"{matrix.shape[0]} rows"
            ),
            evidence=evidence,
            fix="xstable.layers.FiniteCheck",
            example=(
                "drop or impute the rows (x = x[np.isfinite(x).all(axis=1)]); to catch them in "
                'training: keras.Sequential([xstable.layers.FiniteCheck(policy="raise"), ...])'
                if role != "input"
                else "scale = xstable.layers.AutoScale(impute='median'); scale.adapt(x)  # "
                "or stop at them: xstable.layers.FiniteCheck(policy='raise') as the first layer"
            ),
            why="one NaN or Inf in a batch makes that batch's loss and every weight it "
            "updates non-finite",
        )
    ]


def check_constant_features(stats):
    """Features that take one value in every row."""
    constant = np.flatnonzero(stats.constant)
    if constant.size == 0 or stats.num_features == 1:
        return []
    return [
        Finding(
            code="constant-feature",
            severity="info",
            title=(
                f"{constant.size} of {stats.num_features} features of `{stats.name}` are constant"
            ),
            evidence={
                "features": _first(constant),
                "values": [float(stats.minimum[i]) for i in constant[:_MAX_LISTED]],
            },
            fix=AUTOSCALE_FIX,
            example="drop them (x = np.delete(x, features, axis=1)), or scale with a floor: "
            "xstable.layers.AutoScale(min_scale=1e-6)",
            why="a constant feature carries no information, and standardising it divides by a "
            "zero (or ~1e-7) standard deviation",
        )
    ]


def check_scale_spread(stats):
    """Features whose typical magnitudes differ by orders of magnitude."""
    varying = np.flatnonzero(stats.usable & ~stats.constant & (stats.magnitude > 0))
    if varying.size < 2:
        return []
    magnitudes = stats.magnitude[varying]
    largest = varying[int(np.argmax(magnitudes))]
    smallest = varying[int(np.argmin(magnitudes))]
    ratio = float(stats.magnitude[largest] / stats.magnitude[smallest])
    if ratio < SCALE_SPREAD_RATIO:
        return []
    return [
        Finding(
            code="feature-scale-spread",
            severity="warning",
            title=(
                f"features of `{stats.name}` differ in scale by {math.log10(ratio):.1f} orders "
                f"of magnitude ({stats.label(largest)} ~{stats.magnitude[largest]:.3g} vs "
                f"{stats.label(smallest)} ~{stats.magnitude[smallest]:.3g})"
            ),
            evidence={
                "ratio": ratio,
                "orders_of_magnitude": math.log10(ratio),
                "largest_feature": int(largest),
                "largest_magnitude_p95": float(stats.magnitude[largest]),
                "smallest_feature": int(smallest),
                "smallest_magnitude_p95": float(stats.magnitude[smallest]),
                "threshold_ratio": SCALE_SPREAD_RATIO,
            },
            fix=AUTOSCALE_FIX,
            example=AUTOSCALE_EXAMPLE,
            why="the gradient of the large feature's weights dominates: a step size that is "
            "safe for it barely moves the others, one that moves the others diverges",
        )
    ]


def robust_z(matrix, stats):
    """|x - median| / robust spread, per entry (NaN where undefined)."""
    spread = 1.4826 * stats.mad
    # MAD is 0 when over half the values are equal; fall back to the mean absolute deviation
    # (Iglewicz & Hoaglin's modified z-score uses 1.2533 * MeanAD in that case).
    spread = np.where(spread > 0, spread, 1.2533 * stats.mean_abs_dev)
    with np.errstate(all="ignore"):
        z = np.abs(matrix - stats.median) / spread
    return np.where(np.isfinite(matrix) & (spread > 0), z, np.nan)


def check_outliers(matrix, stats, role):
    """Entries more than `OUTLIER_Z` robust standard deviations from the feature median."""
    z = robust_z(matrix, stats)
    hits = np.nan_to_num(z, nan=0.0) > OUTLIER_Z
    if not hits.any():
        return []
    rows = np.flatnonzero(hits.any(axis=1))
    worst_row, worst_feature = np.unravel_index(int(np.nanargmax(z)), z.shape)
    worst_z = float(z[worst_row, worst_feature])
    evidence = {
        "outlier_values": int(hits.sum()),
        "rows_affected": int(rows.size),
        "first_rows": _first(rows),
        "worst_row": int(worst_row),
        "worst_feature": int(worst_feature),
        "worst_value": float(matrix[worst_row, worst_feature]),
        "worst_robust_z": worst_z,
        "feature_median": float(stats.median[worst_feature]),
        "feature_mad": float(stats.mad[worst_feature]),
        "threshold_z": OUTLIER_Z,
    }
    if role == "target":
        fix = "xstable.optimizers.GuardedOptimizer"
        example = (
            "model.compile(loss=keras.losses.Huber(), optimizer=xstable.optimizers."
            "GuardedOptimizer(keras.optimizers.Adam(1e-3), global_clipnorm=1.0))"
        )
        code = "target-outlier"
    else:
        fix = AUTOSCALE_FIX
        example = (
            "scale = xstable.layers.AutoScale(method='robust', clip=5.0); scale.adapt(x)  "
            "# then make it the first layer"
        )
        code = "input-outlier"
    return [
        Finding(
            code=code,
            severity="error" if worst_z >= SEVERE_OUTLIER_Z else "warning",
            title=(
                f"{int(hits.sum())} value(s) of `{stats.name}` lie more than {OUTLIER_Z:g} "
                f"robust standard deviations from the median; worst {stats.label(worst_feature)}"
                f" row {worst_row} = {evidence['worst_value']:.4g} (robust z {worst_z:.3g})"
            ),
            evidence=evidence,
            fix=fix,
            example=example,
            why="one extreme value makes that batch's activations, loss and gradients "
            "extreme; with MSE the squared error can overflow float32",
        )
    ]


def check_target_range(matrix, low, high, reason, loss_name):
    """Targets outside `[low, high]`, which the output activation or loss cannot produce."""
    finite = np.isfinite(matrix)
    outside = finite & ((matrix < low) | (matrix > high))
    if not outside.any():
        return []
    rows = np.flatnonzero(outside.any(axis=1))
    finite_values = matrix[finite]
    return [
        Finding(
            code="target-out-of-range",
            severity="error",
            title=(
                f"{int(outside.sum())} target value(s) lie outside [{low:g}, {high:g}], which "
                f"{reason} can produce; y spans [{finite_values.min():.4g}, "
                f"{finite_values.max():.4g}]"
            ),
            evidence={
                "allowed_low": low,
                "allowed_high": high,
                "reason": reason,
                "loss": loss_name,
                "y_min": float(finite_values.min()),
                "y_max": float(finite_values.max()),
                "values_outside": int(outside.sum()),
                "first_rows": _first(rows),
            },
            fix="keras.layers.Dense(units, activation=None)",
            example="use a linear output (keras.layers.Dense(1)) for unbounded targets, or "
            "rescale y into the activation's range; for 0/1 labels use "
            "xstable.losses.SafeBinaryCrossentropy(), which rejects targets outside [0, 1]",
            why="the model can never reach these targets, so the loss keeps pushing the "
            "output into saturation where gradients vanish or the log of 0 appears",
        )
    ]


def check_sparse_labels(matrix, num_classes, ignore_class, loss_name):
    """Sparse labels that are not integers in `[0, num_classes)`."""
    finite = np.isfinite(matrix)
    values = np.where(finite, matrix, 0.0)
    allowed = finite.copy()
    if ignore_class is not None:
        allowed &= values != ignore_class
    non_integer = allowed & (values != np.round(values))
    negative = allowed & (values < 0)
    too_large = allowed & (values >= num_classes) if num_classes else np.zeros_like(allowed)
    bad = non_integer | negative | too_large
    if not bad.any():
        return []
    rows = np.flatnonzero(bad.any(axis=1))
    return [
        Finding(
            code="sparse-label-out-of-range",
            severity="error",
            title=(
                f"{int(bad.sum())} sparse label(s) are not integers in [0, {num_classes}): "
                f"{int(negative.sum())} negative, {int(too_large.sum())} >= {num_classes}, "
                f"{int(non_integer.sum())} not whole numbers"
            ),
            evidence={
                "num_classes": num_classes,
                "label_min": float(values[finite].min()),
                "label_max": float(values[finite].max()),
                "negative": int(negative.sum()),
                "too_large": int(too_large.sum()),
                "non_integer": int(non_integer.sum()),
                "first_rows": _first(rows),
                "loss": loss_name,
            },
            fix="xstable.losses.SafeSparseCategoricalCrossentropy",
            example="model.compile(loss=xstable.losses.SafeSparseCategoricalCrossentropy(), "
            "...)  # and remap labels to 0..num_classes-1",
            why="backends disagree on out-of-range labels: TF raises on CPU and gives NaN on "
            "GPU, torch raises, JAX silently uses an all-zero one-hot row (loss 0)",
        )
    ]

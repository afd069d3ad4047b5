"""`AutoScale`: a robust, self-configuring input-scaling layer that survives outliers and NaN."""

import keras
import numpy as np
from keras import ops

from xstable import backend
from xstable.layers._adapt_sources import as_adapt_source
from xstable.layers._streaming_quantiles import QuantileSketch, RunningMoments

__all__ = ["AutoScale"]

METHODS = ("auto", "robust", "standard", "minmax")
IMPUTE_POLICIES = ("median", "mean")

# Quantiles the layer reads from the sketch: tails for the heavy-tail test and the scale
# fallbacks, quartiles for the robust scale.
_QUANTILES = np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
_Q01, _Q05, _Q25, _Q50, _Q75, _Q95, _Q99 = range(len(_QUANTILES))
# Width of each quantile range for a standard normal, so a robust unit equals one standard
# deviation on Gaussian data: IQR / 1.349, (q95 - q05) / 3.290, (q99 - q01) / 4.653.
_NORMAL_IQR = 1.3489795003921634
_NORMAL_90 = 3.2897072539029448
_NORMAL_98 = 4.6526957480816815

_LARGEST_FINITE = {
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
    "float32": 3.4028234663852886e38,
    "float64": 1.7976931348623157e308,
}

_LARGEST_NORMAL_SCALE = 1.0 / float(np.finfo(np.float32).tiny)

_NOT_ADAPTED = (
    "AutoScale has no statistics yet: call `layer.adapt(data)` with training inputs (NumPy, "
    "pandas, tensors, tf.data.Dataset, DataLoader or an iterable of batches) before using it, "
    "or load a saved model that contains an adapted AutoScale."
)


def _robust_scale(quantiles):
    """IQR-based scale in standard-deviation units, falling back to wider ranges when it is 0.

    A feature that is mostly one value (zero-inflated counts, flags) has IQR 0 but still varies;
    the fallbacks give it a real scale instead of the floor.
    """
    scale = (quantiles[_Q75] - quantiles[_Q25]) / _NORMAL_IQR
    scale = np.where(scale > 0, scale, (quantiles[_Q95] - quantiles[_Q05]) / _NORMAL_90)
    return np.where(scale > 0, scale, (quantiles[_Q99] - quantiles[_Q01]) / _NORMAL_98)


def _signed_log(values):
    return np.sign(values) * np.log1p(np.abs(values))


def _magnitude(x):
    """`|x|`, written the fastest way for the backend's `log1p(|x|)` (same value everywhere).

    TensorFlow graphs on CPU run `log1p(abs(x))` much slower than `log1p(maximum(x, -x))`,
    although `abs` and `log1p` alone are cheap (it made an auto-scaled training step miss the
    speed target). On eager torch `maximum(x, -x)` is one dispatch more than `abs`, so the
    other backends keep `abs`.
    Both give NaN for NaN and +Inf for ±Inf.
    """
    if backend.ABS_AS_MAXIMUM:
        return ops.maximum(x, -x)
    return ops.abs(x)


def _impute_nan(x, value, before_signed_log):
    """`x` with every NaN replaced by `value` (per feature); the same value on every backend.

    On JAX, in front of the signed log (`before_signed_log`), the replacement runs only when
    the batch holds a NaN, inside `ops.cond`. Fused with the rest of the `auto` transform,
    its compare and select make XLA CPU's cost model call the transform's fusion
    compute-bound (10 flops per value on 8 bytes) and split it into parallel tasks, the
    second of which waits for the core the Python thread holds on a 2-CPU machine; without
    them the fusion does 8 flops per value and stays whole (an auto step then meets its speed
    target against a Normalization step). The NaN test is a separate reduction that XLA
    leaves whole. Everywhere else the plain select stays: the `robust` transform's fusion
    (5 flops per value) is never split, and the reduction and conditional cost it ~1 %
    (measured); TF graphs and torch have no such split to avoid, and a conditional there
    is more ops (on torch, a host read of the predicate).
    """
    if before_signed_log and backend.COND_AROUND_NAN_IMPUTATION:
        return ops.cond(
            ops.any(ops.isnan(x)), lambda: ops.where(ops.isnan(x), value, x), lambda: x
        )
    return ops.where(ops.isnan(x), value, x)


@keras.saving.register_keras_serializable(package="xstable")
class AutoScale(keras.layers.Layer):
    """Scales each input feature robustly, with statistics learned by `adapt()`.

    A drop-in replacement for `keras.layers.Normalization` that puts the scikit-learn
    preprocessing fix for unscaled features and outliers inside the model, on every backend.
    `adapt(data)` streams the data once in bounded memory and stores, per feature, a center and
    a scale (non-trainable weights, so they save and load with the model). At call time:

    1. NaN inputs are imputed (`impute`), in the feature's own units;
    2. `u = (x - center) / scale`;
    3. with `method="auto"`, features found heavy-tailed get `u <- sign(u) log(1 + |u|)`,
       rescaled robustly again;
    4. the result is clipped to `[-clip, clip]` (winsorizing). With `clip=None` it is clipped to
       the largest finite value of the compute dtype, so ±Inf inputs still give finite output.

    Methods (`method`):
    - `"robust"`: center = median, scale = IQR / 1.349 (one unit is one standard deviation on
      Gaussian data). A feature whose IQR is 0 falls back to the 5-95 %, then 1-99 % range.
    - `"standard"`: center = mean, scale = standard deviation (ddof=0), like Normalization.
    - `"minmax"`: center = min, scale = max - min; adapt data maps to [0, 1].
    - `"auto"`: robust, plus the signed log for heavy-tailed or many-orders-of-magnitude
      features, i.e. those whose 5-95 % range exceeds `tail_ratio_threshold` times their IQR
      (Gaussian: 2.4, uniform: 1.8, Cauchy: 6.3, log-uniform over 6 decades: 15.8). The log is
      applied to the robustly scaled value, so the choice and the result do not depend on the
      feature's offset or units. The choice per feature is in `feature_methods`.

    Every scale is at least `min_scale * max(1, |center|)`: a constant feature maps to 0 instead
    of dividing float32 rounding noise by ~0, and a feature near 1e6 keeps at least float32
    resolution.

    NaN and ±Inf in the adapt data are skipped and counted (`adapt_summary`). Quantiles are exact
    when the data is one in-memory array of at most `exact_max_values` numbers; otherwise they
    come from a deterministic streaming sketch whose worst-case rank error is reported in
    `adapt_summary["quantile_rank_error_bound"]` (at most `floor(log2(n / sketch_capacity)) /
    sketch_capacity + 1 / n`, e.g. 0.29 % of the rows for n = 10 million). Statistics are computed
    in float64 with NumPy, so the adapted state is bit-identical on every backend.

    Args:
        method: str, one of `"auto"`, `"robust"`, `"standard"`, `"minmax"`. Default `"auto"`.
        clip: float or None, winsorizing limit in scaled units (robust units for auto/robust,
            standard deviations for standard). Default 5.0.
        impute: `"median"`, `"mean"`, a float (a value in the feature's own units), or None to
            let NaN through. Default `"median"` (a NaN input scales to the median's output).
        min_scale: float > 0, relative floor on every scale. Default 1e-6.
        tail_ratio_threshold: float > 0, for `method="auto"`: the (q95 - q05) / IQR ratio above
            which a feature gets the signed log. Default 4.0.
        sketch_capacity: int >= 8, rows per level of the streaming quantile sketch. Memory is
            `16 * capacity * features * log2(rows / capacity)` bytes. Default 4096.
        exact_max_values: int, in-memory data with at most this many numbers (rows x features)
            gets exact quantiles. Default 4194304 (32 MB as float64).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: for an unknown `method` or `impute`, or a non-positive `min_scale`,
            `clip` or `tail_ratio_threshold`.
        TypeError: for arguments of the wrong type.

    Example:

    >>> import numpy as np, keras
    >>> from xstable.layers import AutoScale
    >>> x = np.random.default_rng(0).uniform(0, 10, size=(100, 2))
    >>> x[:, 1] *= 1e6
    >>> x[0, 0] = 1e10                      # one outlier
    >>> x[1, 1] = np.nan                    # one missing value
    >>> scale = AutoScale()
    >>> scale.adapt(x)
    >>> model = keras.Sequential([keras.Input((2,)), scale, keras.layers.Dense(1)])
    >>> bool(np.isfinite(model.predict(x, verbose=0)).all())
    True
    """

    def __init__(
        self,
        method="auto",
        clip=5.0,
        impute="median",
        min_scale=1e-6,
        tail_ratio_threshold=4.0,
        sketch_capacity=4096,
        exact_max_values=4194304,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
        if clip is not None:
            if isinstance(clip, bool) or not isinstance(clip, (int, float)):
                raise TypeError(f"`clip` must be a float or None. Received: clip={clip!r}")
            if not clip > 0 or not np.isfinite(clip):
                raise ValueError(
                    "`clip` must be a positive finite number (or None for no winsorizing). "
                    f"Received: clip={clip}"
                )
            clip = float(clip)
        if isinstance(impute, str):
            if impute not in IMPUTE_POLICIES:
                raise ValueError(
                    f"`impute` must be one of {IMPUTE_POLICIES}, a float or None. "
                    f"Received: impute={impute!r}"
                )
        elif impute is not None:
            if isinstance(impute, bool) or not isinstance(impute, (int, float)):
                raise TypeError(
                    f"`impute` must be 'median', 'mean', a float or None. Received: impute={impute!r}"
                )
            if not np.isfinite(impute):
                raise ValueError(f"`impute` must be finite. Received: impute={impute}")
            impute = float(impute)
        for arg_name, value in (
            ("min_scale", min_scale),
            ("tail_ratio_threshold", tail_ratio_threshold),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{arg_name}` must be a float. Received: {arg_name}={value!r}")
            if not value > 0 or not np.isfinite(value):
                raise ValueError(
                    f"`{arg_name}` must be a positive finite number. Received: {arg_name}={value}"
                )
        for arg_name, value, lowest in (
            ("sketch_capacity", sketch_capacity, 8),
            ("exact_max_values", exact_max_values, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"`{arg_name}` must be an int. Received: {arg_name}={value!r}")
            if value < lowest:
                raise ValueError(
                    f"`{arg_name}` must be at least {lowest}. Received: {arg_name}={value}"
                )
        self.method = method
        self.clip = clip
        self.impute = impute
        self.min_scale = float(min_scale)
        self.tail_ratio_threshold = float(tail_ratio_threshold)
        self.sketch_capacity = int(sketch_capacity)
        self.exact_max_values = int(exact_max_values)
        self.adapt_summary = None
        self._adapted = False
        self.supports_masking = True

    def build(self, input_shape):
        num_features = input_shape[-1]
        if num_features is None:
            raise ValueError(
                "AutoScale scales the last axis, whose size must be known. "
                f"Received: input_shape={input_shape}"
            )

        # Centers near 1e6 and inverse scales of 1e5 overflow float16: keep state in float32+.
        self._state_dtype = "float64" if self.variable_dtype == "float64" else "float32"

        def state(name, value):
            return self.add_weight(
                name=name,
                shape=(num_features,),
                initializer=keras.initializers.Constant(value),
                trainable=False,
                dtype=self._state_dtype,
            )

        self.center = state("center", 0.0)
        self.inv_scale = state("inv_scale", 1.0)
        self.log_mask = state("log_mask", 0.0)
        self.log_inv_scale = state("log_inv_scale", 1.0)
        self.impute_value = state("impute_value", 0.0)

    @property
    def num_features(self):
        return None if not self.built else int(self.center.shape[0])

    def adapt(self, data):
        """Learns per-feature statistics from `data`, streaming it once in bounded memory.

        Args:
            data: NumPy array or array-like, pandas DataFrame/Series, a JAX/TF/torch tensor,
                `tf.data.Dataset`, torch `DataLoader`, or any iterable of batches. Features are
                on the last axis; in `(x, y)` batches the first element is used.

        Raises:
            ValueError: if the data is empty, a feature has no finite value (the message names
                it), or the feature count differs from the layer's.
            TypeError: for unsupported or non-numeric data.
        """
        source = as_adapt_source(data)
        sketch = moments = None
        nan_count = inf_count = None
        rows = 0
        for batch in source.batches():
            if sketch is None:
                num_features = batch.shape[1]
                if self.built and num_features != self.num_features:
                    raise ValueError(
                        f"The adapt data has {num_features} features but this AutoScale was "
                        f"built for {self.num_features}. Received: data with last axis "
                        f"{num_features}. Adapt with data shaped like the model inputs."
                    )
                capacity = self.sketch_capacity
                if (
                    source.in_memory_rows is not None
                    and source.in_memory_rows * num_features <= self.exact_max_values
                ):
                    # Room for every row at level 0: the quantiles are exact.
                    capacity = max(capacity, source.in_memory_rows // 2 + 1)
                sketch = QuantileSketch(num_features, capacity=capacity)
                moments = RunningMoments(num_features)
                nan_count = np.zeros(num_features, dtype=np.int64)
                inf_count = np.zeros(num_features, dtype=np.int64)
            if len(batch) == 0:
                continue
            nan_count += np.count_nonzero(np.isnan(batch), axis=0)
            infinite = np.isinf(batch)
            inf_count += np.count_nonzero(infinite, axis=0)
            if infinite.any():
                batch = np.where(infinite, np.nan, batch)
            sketch.update(batch)
            moments.update(batch)
            rows += len(batch)
        if sketch is None or rows == 0:
            raise ValueError("`AutoScale.adapt` received no rows. Pass data with at least one row.")
        names = source.feature_names or [None] * sketch.num_features
        empty = np.flatnonzero(sketch.finite_count == 0)
        if len(empty):
            described = ", ".join(
                f"feature {i}"
                + (f" ({names[i]!r})" if names[i] is not None else "")
                + f": {nan_count[i]} NaN, {inf_count[i]} Inf"
                for i in empty[:10]
            )
            raise ValueError(
                f"AutoScale cannot scale a feature with no finite value in the adapt data "
                f"({len(empty)} such feature(s) of {sketch.num_features}; {rows} rows). "
                f"Received: {described}. Drop or fill those columns before adapting."
            )
        self._set_state(sketch, moments, rows, nan_count, inf_count, names)

    def _set_state(self, sketch, moments, rows, nan_count, inf_count, names):
        quantiles = sketch.quantiles(_QUANTILES)
        median = quantiles[_Q50]
        num_features = sketch.num_features
        log_mask = np.zeros(num_features)
        log_scale = np.ones(num_features)
        spread = quantiles[_Q95] - quantiles[_Q05]
        iqr = quantiles[_Q75] - quantiles[_Q25]
        with np.errstate(divide="ignore", invalid="ignore"):
            tail_ratio = np.where(spread > 0, spread / iqr, 0.0)
        if self.method == "standard":
            center, scale = moments.mean, moments.std
        elif self.method == "minmax":
            center, scale = moments.minimum, moments.maximum - moments.minimum
        else:
            center, scale = median, _robust_scale(quantiles)
        scale = np.maximum(scale, self.min_scale * np.maximum(1.0, np.abs(center)))
        # 1/scale must stay a normal float32: XLA on CPU flushes subnormals to 0, and
        # inf * 0 would turn an infinite input into NaN.
        scale = np.minimum(scale, _LARGEST_NORMAL_SCALE)
        if self.method == "auto":
            log_mask = (tail_ratio > self.tail_ratio_threshold).astype(np.float64)
            # The signed log is monotone, so quantiles of the transformed feature are the
            # transformed quantiles: no second pass over the data.
            log_quantiles = _signed_log((quantiles - center) / scale)
            log_scale = np.maximum(_robust_scale(log_quantiles), self.min_scale)
            log_scale = np.where(log_mask > 0, log_scale, 1.0)
        if self.impute == "median":
            impute_value = median
        elif self.impute == "mean":
            impute_value = moments.mean
        elif self.impute is None:
            impute_value = np.zeros(num_features)
        else:
            impute_value = np.full(num_features, self.impute)
        if not self.built:
            self.build((None, num_features))
        self.center.assign(center.astype(self._state_dtype))
        self.inv_scale.assign((1.0 / scale).astype(self._state_dtype))
        self.log_mask.assign(log_mask.astype(self._state_dtype))
        self.log_inv_scale.assign((1.0 / log_scale).astype(self._state_dtype))
        self.impute_value.assign(impute_value.astype(self._state_dtype))
        self._adapted = True
        self.adapt_summary = {
            "rows": rows,
            "feature_names": list(names),
            "finite_count": sketch.finite_count.copy(),
            "nan_count": nan_count,
            "inf_count": inf_count,
            "center": center,
            "scale": scale,
            "tail_ratio": tail_ratio,
            "feature_methods": self.feature_methods,
            "quantiles": dict(zip(_QUANTILES.tolist(), quantiles, strict=True)),
            "quantile_rank_error_bound": float(np.max(sketch.rank_error_bound())),
            "quantiles_exact": not sketch.compacted,
            "sketch_bytes": sketch.nbytes,
        }

    @property
    def feature_methods(self):
        """Per feature, how it is scaled: "log+robust", "robust", "standard" or "minmax".

        Read from the layer's weights, so it is also right after loading a saved model.
        """
        if not self.built:
            return []
        if self.method != "auto":
            return [self.method] * self.num_features
        mask = np.asarray(ops.convert_to_numpy(self.log_mask))
        return ["log+robust" if m > 0.5 else "robust" for m in mask]

    def call(self, inputs):
        if not self._adapted and not isinstance(inputs, keras.KerasTensor):
            raise ValueError(_NOT_ADAPTED)
        output_dtype = self.compute_dtype
        # float16 cannot hold a center near 1e6 or a large inverse scale: scale in float32 and
        # cast the clipped result back.
        dtype = "float32" if output_dtype in ("float16", "bfloat16") else output_dtype
        x = ops.cast(inputs, dtype)
        if self.impute is not None:
            x = _impute_nan(x, ops.cast(self.impute_value, dtype), self.method == "auto")
        scaled = (x - ops.cast(self.center, dtype)) * ops.cast(self.inv_scale, dtype)
        if self.method == "auto":
            logged = ops.sign(scaled) * ops.log1p(_magnitude(scaled))
            logged = logged * ops.cast(self.log_inv_scale, dtype)
            scaled = ops.where(ops.cast(self.log_mask, "bool"), logged, scaled)
        limit = self.clip if self.clip is not None else _LARGEST_FINITE[output_dtype]
        return ops.cast(ops.clip(scaled, -limit, limit), output_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self._adapted = True

    def set_weights(self, weights):
        super().set_weights(weights)
        self._adapted = True

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "method": self.method,
                "clip": self.clip,
                "impute": self.impute,
                "min_scale": self.min_scale,
                "tail_ratio_threshold": self.tail_ratio_threshold,
                "sketch_capacity": self.sketch_capacity,
                "exact_max_values": self.exact_max_values,
            }
        )
        return config

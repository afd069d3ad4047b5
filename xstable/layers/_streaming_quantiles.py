"""Bounded-memory per-feature statistics for `AutoScale.adapt`: a quantile sketch and moments.

The quantile sketch is a deterministic multi-level compactor (Munro-Paterson / MRL family),
vectorised over features with NumPy in float64. Level `h` holds up to `2 * capacity` rows, each
standing for `2**h` input rows. When a level fills, its rows are sorted per feature and every other
row (random start) moves up one level with doubled weight.

Error guarantee (deterministic, not probabilistic): one compaction at level `h` changes the
weighted number of stored items at or below any value by at most `2**h`. The sketch adds up these
weights as it compacts (`E = compaction_weight_total`). For a feature with `n` finite values and
any query `q`, the returned value `v` then satisfies

    #(values < v) / n  <=  q + eps    and    #(values <= v) / n  >=  q - eps,

with `eps = (2 * E + 1) / n`, returned per feature by `rank_error_bound()`. (Without NaN in the
stream the finite weight is exact and the bound is about half that.) `E` is at most
`n * floor(log2(n / capacity)) / (2 * capacity)`, so `eps <= floor(log2(n / capacity)) / capacity
+ 1 / n`: 0.29 % of the rows for 10 million rows at the default capacity 4096. While no
compaction has happened the answer is exact and equals `numpy.nanquantile`. Memory is
`2 * capacity * features * (floor(log2(n / capacity)) + 1)` float64 values: about 15 MB for 10
million rows of 20 features.

NaN marks a missing value: NumPy's sort puts NaN last, so a NaN behaves like +inf inside the
sketch and is skipped when answering a query. Finite counts are kept exactly.
"""

import math

import numpy as np

__all__ = ["QuantileSketch", "RunningMoments"]


class QuantileSketch:
    """Streaming per-feature quantiles with a deterministic rank-error bound.

    Args:
        num_features: int, number of columns in every batch.
        capacity: int, rows kept per level before compaction (at least 8). Larger is more exact.
        seed: int, seed of the random start used when compacting (any value keeps the bound).
    """

    def __init__(self, num_features, capacity=4096, seed=0):
        if int(capacity) < 8:
            raise ValueError(
                f"`capacity` must be an integer of at least 8. Received: capacity={capacity}"
            )
        self.num_features = int(num_features)
        self.capacity = int(capacity)
        self._levels = []  # per level: float64 buffer of shape (2 * capacity, num_features)
        self._fill = []  # rows used per level
        self._rng = np.random.default_rng(seed)
        self.finite_count = np.zeros(self.num_features, dtype=np.int64)
        self.compaction_weight_total = 0  # E in the module docstring

    def _level(self, height):
        while len(self._levels) <= height:
            self._levels.append(np.empty((2 * self.capacity, self.num_features), np.float64))
            self._fill.append(0)
        return self._levels[height]

    def _push(self, height, rows):
        """Adds `rows` (float64, NaN = missing) to a level, compacting whenever it fills."""
        start = 0
        while start < len(rows):
            buffer = self._level(height)
            room = len(buffer) - self._fill[height]
            take = min(room, len(rows) - start)
            buffer[self._fill[height] : self._fill[height] + take] = rows[start : start + take]
            self._fill[height] += take
            start += take
            if self._fill[height] == len(buffer):
                buffer.sort(axis=0)
                offset = int(self._rng.integers(2))
                survivors = buffer[offset::2].copy()
                self._fill[height] = 0
                self.compaction_weight_total += 2**height
                self._push(height + 1, survivors)

    def update(self, batch):
        """Adds a batch of shape `(rows, num_features)`; NaN entries are treated as missing."""
        batch = np.asarray(batch, dtype=np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.num_features:
            raise ValueError(
                f"Expected a batch of shape (rows, {self.num_features}). "
                f"Received: shape={batch.shape}"
            )
        self.finite_count += np.count_nonzero(~np.isnan(batch), axis=0)
        self._push(0, batch)

    @property
    def compacted(self):
        return self.compaction_weight_total > 0

    def rank_error_bound(self):
        """Worst-case rank error `(2 E + 1) / n` per feature (module docstring), shape (F,).

        Zero while the sketch is exact (nothing compacted yet).
        """
        if not self.compacted:
            return np.zeros(self.num_features)
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = (2.0 * self.compaction_weight_total + 1.0) / self.finite_count
        return np.where(self.finite_count > 0, bound, np.inf)

    @staticmethod
    def worst_case_rank_error(rows, capacity):
        """The a-priori bound `floor(log2(rows / capacity)) / capacity + 1 / rows` (no NaN lost)."""
        if rows < 2 * capacity:
            return 0.0
        return math.floor(math.log2(rows / capacity)) / capacity + 1.0 / rows

    @property
    def nbytes(self):
        return sum(level.nbytes for level in self._levels)

    def quantiles(self, qs):
        """Returns the `qs` quantiles (NumPy 'linear' definition) per feature, shape (len(qs), F).

        Features with no finite value give NaN.
        """
        qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
        result = np.full((len(qs), self.num_features), np.nan)
        values_per_level = [
            lvl[:fill] for lvl, fill in zip(self._levels, self._fill, strict=True) if fill
        ]
        weights_per_level = [np.full(fill, 2.0**h) for h, fill in enumerate(self._fill) if fill]
        if not values_per_level:
            return result
        if not self.compacted:
            # Everything seen is still stored with weight 1: answer exactly.
            with np.errstate(all="ignore"), _quiet_all_nan():
                return np.nanquantile(values_per_level[0], qs, axis=0)
        values = np.concatenate(values_per_level, axis=0)
        weights = np.concatenate(weights_per_level)
        for feature in range(self.num_features):
            column = values[:, feature]
            finite = ~np.isnan(column)
            if not finite.any():
                continue
            order = np.argsort(column[finite], kind="stable")
            sorted_values = column[finite][order]
            cumulative = np.cumsum(weights[finite][order])
            total = cumulative[-1]
            # Position in the conceptual expanded sample, as numpy's 'linear' method does.
            position = qs * (total - 1.0)
            lower = np.floor(position)
            fraction = position - lower
            lower_index = np.searchsorted(cumulative, lower, side="right")
            upper_index = np.searchsorted(cumulative, np.minimum(lower + 1, total - 1), "right")
            lower_value = sorted_values[np.minimum(lower_index, len(sorted_values) - 1)]
            upper_value = sorted_values[np.minimum(upper_index, len(sorted_values) - 1)]
            result[:, feature] = lower_value + fraction * (upper_value - lower_value)
        return result


class _quiet_all_nan:
    """Silences NumPy's 'All-NaN slice' warning; all-NaN features are reported by the caller."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catcher.__exit__(*exc)


class RunningMoments:
    """Exact streaming count, mean, variance, min and max per feature, ignoring NaN (float64).

    Batches are merged with Chan et al.'s pairwise update, which stays accurate for large means
    with small spread (unlike the one-pass E[x^2] - E[x]^2).
    """

    def __init__(self, num_features):
        self.count = np.zeros(num_features, dtype=np.int64)
        self.mean = np.zeros(num_features)
        self.m2 = np.zeros(num_features)
        self.minimum = np.full(num_features, np.inf)
        self.maximum = np.full(num_features, -np.inf)

    def update(self, batch):
        batch = np.asarray(batch, dtype=np.float64)
        finite = ~np.isnan(batch)
        batch_count = finite.sum(axis=0)
        present = batch_count > 0
        if not present.any():
            return
        safe_count = np.maximum(batch_count, 1)
        batch_mean = np.where(finite, batch, 0.0).sum(axis=0) / safe_count
        batch_m2 = (np.where(finite, batch - batch_mean, 0.0) ** 2).sum(axis=0)
        total = self.count + batch_count
        safe_total = np.maximum(total, 1)
        delta = batch_mean - self.mean
        self.mean = np.where(present, self.mean + delta * batch_count / safe_total, self.mean)
        self.m2 = np.where(
            present,
            self.m2 + batch_m2 + delta**2 * self.count * batch_count / safe_total,
            self.m2,
        )
        self.count = total
        self.minimum = np.fmin(self.minimum, np.where(finite, batch, np.inf).min(axis=0))
        self.maximum = np.fmax(self.maximum, np.where(finite, batch, -np.inf).max(axis=0))

    @property
    def std(self):
        """Population standard deviation (ddof=0), like NumPy's default and Keras Normalization."""
        return np.sqrt(self.m2 / np.maximum(self.count, 1))

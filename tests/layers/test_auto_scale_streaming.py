"""AutoScale.adapt sources and streaming: every input type gives the same state, and the
streaming sketch stays within its stated rank error of the exact in-memory quantiles."""

import keras
import numpy as np
import pytest

from tests.helpers import assert_matches_reference, to_numpy
from xstable.layers import AutoScale
from xstable.layers._streaming_quantiles import QuantileSketch, RunningMoments


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    x = np.stack([rng.normal(size=300), rng.standard_cauchy(300) * 1e3, rng.random(300)], 1)
    x[7] = np.nan
    x[9, 2] = np.inf
    return x.astype("float32")


def _state(layer):
    return [to_numpy(w) for w in layer.weights]


def _assert_same_state(layer, reference, what):
    for got, want in zip(_state(layer), _state(reference), strict=True):
        assert_matches_reference(got, want, "exact", what=what)


@pytest.fixture(scope="module")
def reference(small):
    layer = AutoScale()
    layer.adapt(small)
    return layer


def _batches(x, size=64):
    for start in range(0, len(x), size):
        yield x[start : start + size]


def test_iterables_and_backend_tensors_match_numpy(small, reference):
    sources = {
        "list of rows": small.tolist(),
        "generator of batches": _batches(small),
        "list of (x, y) batches": [(b, np.zeros(len(b))) for b in _batches(small)],
        "backend tensor": keras.ops.convert_to_tensor(small),
    }
    for what, source in sources.items():
        layer = AutoScale()
        layer.adapt(source)
        _assert_same_state(layer, reference, what)


def test_pandas_source(small, reference):
    pandas = pytest.importorskip("pandas", reason="pandas is an optional adapt source")
    layer = AutoScale()
    layer.adapt(pandas.DataFrame(small, columns=["a", "b", "c"]))
    _assert_same_state(layer, reference, "DataFrame")
    assert layer.adapt_summary["feature_names"] == ["a", "b", "c"]


def test_tf_data_source(small, reference):
    tf = pytest.importorskip("tensorflow", reason="tf.data needs TensorFlow installed")
    dataset = tf.data.Dataset.from_tensor_slices((small, np.zeros(len(small)))).batch(50)
    layer = AutoScale()
    layer.adapt(dataset)
    _assert_same_state(layer, reference, "tf.data.Dataset")


def test_torch_tensor_and_dataloader_sources(small, reference):
    torch = pytest.importorskip("torch", reason="torch sources need PyTorch installed")
    tensor = torch.tensor(small, requires_grad=True)
    layer = AutoScale()
    layer.adapt(tensor)
    _assert_same_state(layer, reference, "torch tensor")
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(small), torch.zeros(len(small))),
        batch_size=32,
    )
    layer = AutoScale()
    layer.adapt(loader)
    _assert_same_state(layer, reference, "DataLoader")


def test_exhausted_generator_and_bad_types_are_errors(small):
    with pytest.raises(TypeError, match="numeric"):
        AutoScale().adapt(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="dict batches"):
        AutoScale().adapt(iter([{"x": small}]))
    with pytest.raises(TypeError, match="Received: data of type int"):
        AutoScale().adapt(3)
    with pytest.raises(ValueError, match="no rows"):
        AutoScale().adapt(iter([]))


def _true_rank_bounds(column, value):
    return np.mean(column < value), np.mean(column <= value)


QUANTILES = np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])


@pytest.mark.parametrize("capacity", [64, 512])
def test_sketch_rank_error_is_within_its_stated_bound(capacity):
    rng = np.random.default_rng(capacity)
    rows = 60_000
    x = np.stack(
        [
            rng.standard_cauchy(rows),
            rng.lognormal(0, 3, rows),
            np.round(rng.normal(size=rows), 1),  # many ties
            np.where(rng.random(rows) < 0.3, np.nan, rng.normal(size=rows)),  # 30 % missing
        ],
        axis=1,
    )
    sketch = QuantileSketch(4, capacity=capacity)
    for start in range(0, rows, 997):
        sketch.update(x[start : start + 997])
    bound = sketch.rank_error_bound()
    assert sketch.compacted
    # The a-priori bound holds for features without NaN.
    assert bound[0] <= QuantileSketch.worst_case_rank_error(rows, capacity) + 1e-12
    estimates = sketch.quantiles(QUANTILES)
    worst = 0.0
    for feature in range(4):
        column = x[:, feature][~np.isnan(x[:, feature])]
        for q, value in zip(QUANTILES, estimates[:, feature], strict=True):
            below, at_or_below = _true_rank_bounds(column, value)
            error = max(below - q, q - at_or_below, 0.0)
            worst = max(worst, error / bound[feature])
            assert error <= bound[feature], (feature, q, error, bound[feature])
    # The bound is worst-case; make sure the sketch is not trivially loose either.
    assert worst < 0.5, worst
    assert sketch.nbytes <= 2 * capacity * 4 * 8 * (np.log2(rows / capacity) + 2)


def test_sketch_is_exact_before_compaction():
    x = np.random.default_rng(0).normal(size=(1000, 2))
    x[::10, 1] = np.nan
    sketch = QuantileSketch(2, capacity=1024)
    sketch.update(x[:500])
    sketch.update(x[500:])
    assert not sketch.compacted and (sketch.rank_error_bound() == 0).all()
    assert_matches_reference(
        sketch.quantiles(QUANTILES), np.nanquantile(x, QUANTILES, axis=0), "float64"
    )


def test_running_moments_match_numpy_for_large_mean_small_spread():
    rng = np.random.default_rng(0)
    x = rng.normal(1e8, 1e-2, size=(10_000, 1))
    x[::7] = np.nan
    moments = RunningMoments(1)
    for start in range(0, len(x), 333):
        moments.update(x[start : start + 333])
    assert_matches_reference(moments.mean, np.nanmean(x, 0), "float64", what="mean")
    assert_matches_reference(moments.std, np.nanstd(x, 0), (1e-6, 0.0), what="std")


def test_streaming_adapt_equals_in_memory_adapt_within_the_stated_error():
    rng = np.random.default_rng(5)
    rows = 40_000
    x = np.stack([rng.standard_cauchy(rows), rng.normal(1e6, 1e3, rows)], axis=1)
    exact = AutoScale(method="robust")
    exact.adapt(x)
    assert exact.adapt_summary["quantiles_exact"]
    streamed = AutoScale(method="robust", sketch_capacity=256)
    streamed.adapt(_batches(x, 1000))
    summary = streamed.adapt_summary
    assert not summary["quantiles_exact"]
    epsilon = summary["quantile_rank_error_bound"]
    assert 0 < epsilon < 0.05
    for feature in range(2):
        column = x[:, feature]
        for q in (0.25, 0.5, 0.75):
            value = summary["quantiles"][q][feature]
            below, at_or_below = _true_rank_bounds(column, value)
            assert below - epsilon <= q <= at_or_below + epsilon, (feature, q, value)
    # Same rank tolerance, seen as values: the streamed median lies between the exact
    # (0.5 - eps) and (0.5 + eps) quantiles.
    low, high = np.quantile(x, [0.5 - epsilon, 0.5 + epsilon], axis=0)
    center = to_numpy(streamed.center)
    assert ((center >= low.astype("float32")) & (center <= high.astype("float32"))).all()
    # In-memory data beyond exact_max_values streams through the same sketch.
    big = AutoScale(method="robust", sketch_capacity=256, exact_max_values=1000)
    big.adapt(x)
    assert not big.adapt_summary["quantiles_exact"]

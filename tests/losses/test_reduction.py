import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches_reference, to_numpy
from tests.numerics._grad import value_and_grad
from xstable.losses import _reduction

_ADVERSARIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38, 1.0, 1e-45]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(_ADVERSARIAL), min_size=1, max_size=40))
def test_counts_and_masked_mean_match_numpy(raw):
    values = np.asarray(raw, np.float32)
    finite = np.isfinite(values)
    mask = keras.ops.isfinite(keras.ops.convert_to_tensor(values))
    count = _reduction.count(mask)
    assert float(to_numpy(count)) == finite.sum()
    assert float(to_numpy(_reduction.count_complement(mask, count))) == (~finite).sum()
    zeroed = keras.ops.where(mask, keras.ops.convert_to_tensor(values), 0.0)
    mean = _reduction.reduce_masked(zeroed, mask, None, "sum_over_batch_size", count)
    kept = values[finite].astype("float64")
    if kept.size > 1 and np.abs(kept).max() > 1e38:
        return  # two of +-3e38 overflow a float32 sum (as in Keras): not a masking question
    expected = kept.sum() / kept.size if kept.size else 0.0
    assert_matches_reference(mean, np.array(expected), "float32")


def test_count_complement_counts_itself_above_the_exact_float32_range():
    mask = keras.ops.ones((2**24 + 3,), dtype="bool")
    # A count that is off by one: only the subtraction would believe it.
    wrong = keras.ops.convert_to_tensor(2.0**24, dtype="float32")
    assert float(to_numpy(_reduction.count_complement(mask, wrong))) == 0.0


def test_no_valid_entry_gives_a_zero_mean_and_a_zero_gradient():
    def fn(t):
        valid = keras.ops.zeros(t.shape, dtype="bool")
        zeroed = keras.ops.where(valid, t, 0.0)
        return _reduction.reduce_masked(zeroed, valid, None, "sum_over_batch_size")

    value, grad = value_and_grad(fn, np.array([np.nan, 1.0], np.float32))
    assert float(value) == 0.0
    assert_matches_reference(grad, np.zeros(2), "exact", what="gradient")

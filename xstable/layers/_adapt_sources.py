"""Turns what a user passes to `AutoScale.adapt` into float64 NumPy batches of shape (rows, F).

Accepted: NumPy arrays and array-likes, pandas DataFrames/Series, backend tensors (JAX, TF,
torch), `tf.data.Dataset`, torch `DataLoader`, Keras `PyDataset`, and any other iterable of
batches (generators included). In a batch that is a tuple or list, such as `(x, y)` or
`(x, y, sample_weight)`, the first element is the input.

TensorFlow and torch are never imported here unless the caller already imported them (we look in
`sys.modules`), and only to recognise their types: adapting from NumPy costs no framework import.
"""

import sys

import numpy as np

__all__ = ["AdaptSource", "as_adapt_source"]

# In-memory data is fed to the statistics in slices of this many rows, so converting a large
# float32 array to float64 never doubles its memory.
DEFAULT_CHUNK_ROWS = 65536


class AdaptSource:
    """Batches of adapt data plus what is known about them before iterating.

    Attributes:
        batches: callable returning an iterator of float64 arrays of shape (rows, F).
        in_memory_rows: the row count when all the data is one in-memory array, else None.
        feature_names: column names (pandas) or None.
    """

    def __init__(self, batches, in_memory_rows=None, feature_names=None):
        self.batches = batches
        self.in_memory_rows = in_memory_rows
        self.feature_names = feature_names


def _loaded(module_name):
    return sys.modules.get(module_name)


def _is_tf_dataset(data):
    tf = _loaded("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def _is_torch_tensor(data):
    torch = _loaded("torch")
    return torch is not None and isinstance(data, torch.Tensor)


def _is_pandas(data):
    pandas = _loaded("pandas")
    return pandas is not None and isinstance(data, (pandas.DataFrame, pandas.Series))


def _to_rows(array):
    """Float64 2-D view: features on the last axis, everything else flattened into rows."""
    array = np.asarray(array)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise TypeError(
            "`AutoScale.adapt` needs numeric data. "
            f"Received: an array of dtype={array.dtype}. Convert or drop non-numeric columns."
        )
    array = array.astype(np.float64, copy=False)
    if array.ndim == 0:
        raise ValueError("`AutoScale.adapt` needs data with at least one axis. Received: a scalar.")
    if array.ndim == 1:
        return array.reshape(-1, 1)
    return array.reshape(-1, array.shape[-1])


def _tensor_to_numpy(batch):
    """Any single tensor-like batch (not a tuple) as a NumPy array."""
    if _is_torch_tensor(batch):
        batch = batch.detach().cpu()
        if not batch.dtype.is_floating_point or batch.dtype.itemsize < 4:
            batch = batch.float()  # bfloat16 has no NumPy dtype
        return batch.numpy()
    if _is_pandas(batch):
        return batch.to_numpy(dtype=np.float64, na_value=np.nan)
    if isinstance(batch, dict):
        raise TypeError(
            "`AutoScale.adapt` cannot take dict batches: it scales one tensor. "
            f"Received: a batch with keys={sorted(batch)}. Pass the input tensor "
            "(e.g. `dataset.map(lambda d: d['features'])`)."
        )
    return np.asarray(batch)


def _first_of_structure(batch):
    while isinstance(batch, (tuple, list)) and batch and not np.isscalar(batch[0]):
        batch = batch[0]
    return batch


def _chunked(array, chunk_rows):
    flat = array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array.reshape(-1, 1)

    def batches():
        for start in range(0, len(flat), chunk_rows):
            yield _to_rows(flat[start : start + chunk_rows])

    return batches


def as_adapt_source(data, chunk_rows=DEFAULT_CHUNK_ROWS):
    """Wraps `data` as an `AdaptSource`.

    Args:
        data: what the user passed to `adapt`.
        chunk_rows: int, rows per batch when slicing in-memory data.

    Returns:
        An `AdaptSource`.

    Raises:
        TypeError: for data that is neither array-like nor an iterable of batches.
    """
    if data is None:
        raise TypeError("`AutoScale.adapt` needs data. Received: data=None")
    if _is_pandas(data):
        names = [str(c) for c in data.columns] if hasattr(data, "columns") else [str(data.name)]
        array = data.to_numpy(dtype=np.float64, na_value=np.nan)
        source = as_adapt_source(array, chunk_rows)
        source.feature_names = names
        return source
    if _is_tf_dataset(data):

        def tf_batches():
            for element in data.as_numpy_iterator():
                yield _to_rows(_tensor_to_numpy(_first_of_structure(element)))

        return AdaptSource(tf_batches)
    if _is_torch_tensor(data):
        data = _tensor_to_numpy(data)
    if isinstance(data, (list, tuple)):
        data = np.asarray(data)
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        array = np.asarray(data)
        _to_rows(array[:0] if array.ndim else array)  # type and rank check before iterating
        rows = int(np.prod(array.shape[:-1])) if array.ndim > 1 else int(array.shape[0])
        return AdaptSource(_chunked(array, chunk_rows), in_memory_rows=rows)
    if hasattr(data, "__iter__") or hasattr(data, "__getitem__"):
        if hasattr(data, "__next__"):
            # A generator or iterator can be walked only once.
            consumed = []

            def iterator_batches():
                if consumed:
                    raise ValueError(
                        "`AutoScale.adapt` was given an iterator that is already exhausted. "
                        "Pass a fresh generator or a re-iterable object (list, Dataset)."
                    )
                consumed.append(True)
                for batch in data:
                    yield _to_rows(_tensor_to_numpy(_first_of_structure(batch)))

            return AdaptSource(iterator_batches)

        def iterable_batches():
            if hasattr(data, "__iter__"):
                iterator = iter(data)
            else:  # Sequence-like objects such as keras.utils.PyDataset
                iterator = (data[i] for i in range(len(data)))
            for batch in iterator:
                yield _to_rows(_tensor_to_numpy(_first_of_structure(batch)))

        return AdaptSource(iterable_batches)
    raise TypeError(
        "`AutoScale.adapt` accepts NumPy arrays, pandas objects, tensors, tf.data.Dataset, "
        "torch DataLoader or any iterable of batches. "
        f"Received: data of type {type(data).__name__}."
    )

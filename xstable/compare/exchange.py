"""Data-only files for the states and inspections that compare's processes exchange.

A nested structure of dicts (string keys), lists, tuples, strings, numbers, booleans, `None`
and NumPy arrays is stored as one `.npz` file: the arrays as its members, the structure as
JSON in a string member. Reading uses `np.load(allow_pickle=False)` and `json.loads`, so a file
replaced by someone else can at worst hold wrong numbers, never code that runs when it is read
(unlike `pickle`).
"""

import io
import json
import os

import numpy as np

__all__ = ["save_tree", "load_tree", "tree_to_bytes", "tree_from_bytes"]

_STRUCTURE = "__structure__"
_ARRAY = "__array__"
_TUPLE = "__tuple__"
_WIDENED = {"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3b11fnuz", "float8_e4m3fnuz",
            "float8_e5m2fnuz"}


def _encode(value, arrays, stored=None):
    # `stored`: id of each array object already written -> its member name, so an array
    # that the structure refers to twice is stored once (and read back as one object).
    stored = {} if stored is None else stored
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"Only string keys can be stored. Received keys: {list(value)}.")
        if _ARRAY in value or _TUPLE in value:
            raise ValueError(f"The keys {_ARRAY!r} and {_TUPLE!r} are reserved.")
        return {k: _encode(v, arrays, stored) for k, v in value.items()}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, arrays, stored) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays, stored) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        if isinstance(value, np.ndarray) and id(value) in stored:
            return {_ARRAY: stored[id(value)], "scalar": False}
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError("Arrays of Python objects cannot be stored without pickle.")
        if array.dtype.name in _WIDENED:
            # bfloat16 and float8 (ml_dtypes) have no NumPy type: a reader without ml_dtypes
            # would get raw bytes. float32 holds each of their values exactly.
            array = array.astype(np.float32)
        key = f"a{len(arrays)}"
        arrays[key] = array
        if isinstance(value, np.ndarray):
            stored[id(value)] = key
        return {_ARRAY: key, "scalar": isinstance(value, np.generic)}
    raise TypeError(f"Cannot store a value of type {type(value).__name__} as data.")


def _decode(value, arrays):
    if isinstance(value, dict):
        if _ARRAY in value:
            array = arrays[value[_ARRAY]]
            return array[()] if value.get("scalar") else array
        if _TUPLE in value:
            return tuple(_decode(v, arrays) for v in value[_TUPLE])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def tree_to_bytes(tree):
    """Returns the `.npz` bytes of a nested structure of containers, scalars and arrays.

    Raises:
        TypeError: If the structure holds anything else (objects, non-string dict keys).
    """
    arrays = {}
    structure = _encode(tree, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **{_STRUCTURE: np.array(json.dumps(structure))}, **arrays)
    return buffer.getvalue()


def tree_from_bytes(data):
    """Reads bytes from `tree_to_bytes` back, without unpickling anything."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    structure = json.loads(str(arrays.pop(_STRUCTURE)))
    return _decode(structure, arrays)


def save_tree(path, tree):
    """Writes `tree` to `path` (`.npz`) through a temporary file and an atomic rename."""
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "wb") as f:
        f.write(tree_to_bytes(tree))
    os.replace(temp, path)


def load_tree(path):
    """Reads a file written by `save_tree`; data only (`allow_pickle=False`)."""
    with open(path, "rb") as f:
        return tree_from_bytes(f.read())

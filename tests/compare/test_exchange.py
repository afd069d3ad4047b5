"""Data-only exchange files: structures round-trip, and nothing executable is ever loaded."""

import pathlib
import pickle
import re

import numpy as np
import pytest

import xstable.compare
from xstable.compare.exchange import load_tree, save_tree


class _Payload:
    """Unpickling this creates a marker file: the code execution a pickle file allows."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_states_and_inspections_round_trip(tmp_path):
    tree = {
        "step": 3,
        "x": np.arange(6, dtype="float32").reshape(2, 3),
        "y": (np.ones(2), {"b": np.int64(4)}),
        "layers": [{"name": "dense", "outputs": [np.array([np.nan, np.inf])]}],
        "loss": float("nan"),
        "train_loss": None,
        "notes": ["a"],
    }
    save_tree(str(tmp_path / "t.npz"), tree)
    back = load_tree(str(tmp_path / "t.npz"))
    assert back["step"] == 3 and back["train_loss"] is None and back["notes"] == ["a"]
    np.testing.assert_array_equal(back["x"], tree["x"])
    assert isinstance(back["y"], tuple) and back["y"][1]["b"] == 4
    assert np.isnan(back["loss"]) and np.isinf(back["layers"][0]["outputs"][0][1])


def test_a_substituted_pickle_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "inspect.npz"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ValueError, match="pickled"):
        load_tree(str(path))
    # An .npz whose member is a pickled object array: also refused.
    np.savez(path, __structure__=np.array("{}"),
             a0=np.array([_Payload(str(marker))], dtype=object))
    with pytest.raises(ValueError):
        load_tree(str(path))
    assert not marker.exists()


def test_objects_cannot_be_stored(tmp_path):
    with pytest.raises(TypeError):
        save_tree(str(tmp_path / "t.npz"), {"a": object()})


def test_compare_imports_no_pickle():
    folder = pathlib.Path(xstable.compare.__file__).parent
    offenders = [
        f.name for f in folder.glob("*.py")
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib)\b",
                     f.read_text(), re.MULTILINE)
    ]
    assert offenders == []


def test_an_array_referred_to_twice_is_stored_once(tmp_path):
    shared = np.arange(4.0)
    tree = {"calls": [{"outputs": [shared]}], "layers": [{"outputs": [shared]}],
            "other": np.arange(4.0)}
    save_tree(str(tmp_path / "t.npz"), tree)
    with np.load(tmp_path / "t.npz", allow_pickle=False) as archive:
        assert len(archive.files) == 3  # the structure, `shared` once, `other`
    back = load_tree(str(tmp_path / "t.npz"))
    assert back["calls"][0]["outputs"][0] is back["layers"][0]["outputs"][0]
    np.testing.assert_array_equal(back["other"], tree["other"])

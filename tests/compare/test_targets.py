import pytest

from xstable.compare.targets import load_spec, spec_from_dict, target_slug
from xstable.training import TrainingSpec


def test_module_function_returning_a_spec():
    spec = load_spec("tests.compare.specs:benign_mlp")
    assert isinstance(spec, TrainingSpec) and spec.name == "benign_mlp"


def test_dict_spec_and_spec_object_are_accepted():
    spec = load_spec("tests.compare.specs:dict_spec")
    assert spec.name == "from_dict" and spec.epochs == 1 and spec.batch_size == 32
    assert load_spec("tests.compare.specs:SPEC_OBJECT").name == "benign_mlp"


def test_file_path_target(tmp_path):
    path = tmp_path / "my_specs.py"
    path.write_text(
        "from tests.compare.specs import benign_mlp\n"
        "def make():\n    return benign_mlp()\n"
    )
    assert load_spec(f"{path}:make").name == "benign_mlp"


@pytest.mark.parametrize(
    "target, error, match",
    [
        ("tests.compare.specs:no_such_function", ValueError,
         "has no attribute 'no_such_function'"),
        ("no_such_module_xyz:make", ValueError, "cannot import module 'no_such_module_xyz'"),
        ("/no/such/file.py:make", ValueError, "does not exist"),
        ("tests.compare.specs:returns_number", TypeError,
         "must give a `TrainingSpec` or a spec dict. Received: int"),
        ("tests.compare.specs:dict_missing_data", ValueError,
         r"missing the required keys \['make_data'\]"),
        ("tests.compare.specs:", ValueError, "must look like `module:function`"),
    ],
)
def test_bad_specs_give_clear_errors(target, error, match):
    with pytest.raises(error, match=match):
        load_spec(target)


def test_dict_spec_validation():
    spec = load_spec("tests.compare.specs:dict_spec")
    good = {
        "name": "x",
        "build_model": spec.build_model,
        "make_data": spec.make_data,
        "make_compile_args": spec.make_compile_args,
    }
    assert spec_from_dict(good).batch_size == 32
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        spec_from_dict({**good, "learning_rate": 0.1})
    with pytest.raises(TypeError, match="`make_data` must be a callable"):
        spec_from_dict({**good, "make_data": [1, 2]})
    with pytest.raises(TypeError, match="`data` must be a dict"):
        spec_from_dict([("name", "x")])
    with pytest.raises(TypeError, match="`target` must be a non-empty string"):
        load_spec(None)


def test_target_slugs_are_file_safe_and_distinct():
    a, b = target_slug("pkg.mod:make"), target_slug("pkg.mod_make")
    assert a != b
    assert all(c.isalnum() or c in "_.-" for c in a + b)

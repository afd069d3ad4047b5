"""Every framework import and backend branch of xstable lives in `xstable/backend/`.

The rest of the library is written with `keras.ops` and public `keras.*` only, and asks the
seam (`xstable.backend`) for what those cannot express. These checks read the sources: they
fail on a direct `import tensorflow` / `torch` / `jax` (also deferred inside a function or via
`importlib`) or a `keras.config.backend()` call anywhere else in the package.
"""

import pathlib
import re

import pytest

_PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "xstable"
_SEAM = _PACKAGE / "backend"
_FRAMEWORKS = r"(tensorflow|torch|jax|jaxlib)"
_FORBIDDEN = {
    "framework import": re.compile(rf"^\s*(import|from)\s+{_FRAMEWORKS}(\.|\s|$)"),
    "framework import_module": re.compile(rf"import_module\(\s*[\"']{_FRAMEWORKS}[\"'.]"),
    "backend branch": re.compile(r"\b(config|backend)\.backend\(\)"),
}


def _offending_lines(root, skip):
    found = []
    for path in sorted(root.rglob("*.py")):
        if skip is not None and skip in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in _FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(root.parent)}:{number}: {what}: {line.strip()}")
    return found


def test_no_framework_import_or_backend_branch_outside_the_seam():
    found = _offending_lines(_PACKAGE, skip=_SEAM)
    assert not found, "Move these into xstable/backend/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import torch\n",
        "    import tensorflow as tf\n",
        "from jax import numpy as jnp\n",
        "        import jax.numpy as jnp\n",
        "module = importlib.import_module('torch')\n",
        "if keras.config.backend() == 'jax':\n",
        "name = keras.backend.backend()\n",
    ],
)
def test_the_check_finds_each_forbidden_form(tmp_path, source):
    package = tmp_path / "xstable"
    package.mkdir()
    (package / "module.py").write_text(source, encoding="utf-8")
    assert len(_offending_lines(package, skip=None)) == 1


def test_the_check_ignores_names_that_only_look_alike(tmp_path):
    package = tmp_path / "xstable"
    package.mkdir()
    (package / "module.py").write_text(
        "import torchvision_like\nfrom xstable.backend import torch\n# import torch later\n"
        "backend_name = 'jax'\n",
        encoding="utf-8",
    )
    assert _offending_lines(package, skip=None) == []


def test_the_seam_itself_is_where_the_frameworks_are_imported():
    assert _offending_lines(_SEAM, skip=None), "xstable/backend/ should hold the imports"


# ---- the interface, on the backend of this process ----------------------------------------


def test_the_seam_serves_the_backend_keras_runs_on():
    import keras

    from xstable import backend

    assert backend.NAME == keras.config.backend()
    missing = [name for name in backend.__all__ if not hasattr(backend, name)]
    assert missing == []
    flags = [name for name in backend.__all__ if name.isupper() and name != "NAME"]
    assert all(isinstance(getattr(backend, name), bool) for name in flags)


def test_the_backend_norm_and_scale_equal_the_keras_ops_forms():
    import keras
    import numpy as np

    from tests.helpers import assert_matches_reference, to_numpy
    from xstable import backend
    from xstable.backend import _portable

    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=shape).astype("float32") for shape in ((64, 32), (32,), (7, 3))]
    grads = [keras.ops.convert_to_tensor(a) for a in arrays] + [None]
    reference = np.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays))
    assert_matches_reference(backend.global_norm(grads), reference, "float32", what="seam")
    assert_matches_reference(_portable.global_norm(grads), reference, "float32", what="ops")
    for bad in (np.inf, np.nan):
        broken = grads[:1] + [keras.ops.convert_to_tensor(np.array([bad], "float32"))]
        assert np.isnan(to_numpy(backend.global_norm(broken))) == np.isnan(bad)
        assert not np.isfinite(to_numpy(backend.global_norm(broken)))
    scale = keras.ops.convert_to_tensor(np.float32(0.5))
    scaled = backend.scale_all(grads, scale)
    assert scaled[-1] is None
    for got, want in zip(scaled[:-1], _portable.scale_all(grads, scale)[:-1], strict=True):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))


def test_a_backend_without_a_compiled_form_is_named_in_the_error():
    from xstable.backend import _portable

    with pytest.raises(ValueError, match=r"Received: backend='"):
        _portable.CompiledFunction(lambda values: values)

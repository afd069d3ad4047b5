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

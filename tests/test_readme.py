"""README.md's Python blocks run, unchanged, on the active backend.

Each ```python block is a self-contained quickstart: it is executed as written, in a fresh
namespace and a temporary working directory, so a block that uses an undefined name or an API
that changed fails here before a user copies it.
"""

import os
import re
from pathlib import Path

import keras
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _python_blocks():
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(pytest.param(line, match.group(1), id=f"README.md:{line}"))
    return blocks


def test_readme_has_python_quickstarts():
    assert len(_python_blocks()) >= 3, "README.md should show runnable Python quickstarts"


@pytest.mark.parametrize(("line", "source"), _python_blocks())
def test_readme_block_runs(line, source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    policy = keras.config.dtype_policy()
    try:
        # Padded so that a traceback's line numbers are README.md's.
        code = compile("\n" * line + source, str(README), "exec")
        exec(code, {"__name__": "__readme__"})
    finally:
        keras.config.set_dtype_policy(policy)
    # Nothing a block writes may land outside its working directory.
    assert Path(os.getcwd()) == tmp_path

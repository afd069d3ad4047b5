"""benchmarks/_xstable_at_revision.py: a past xstable imported beside the working tree's."""

import os
import subprocess
import sys

import numpy as np
import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))
from _xstable_at_revision import import_against, import_xstable_at  # noqa: E402


def _has_git_history():
    try:
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, check=True
        )
        return True
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False


needs_git = pytest.mark.skipif(
    not _has_git_history(), reason="needs the repository's git history (a git checkout)"
)


@needs_git
def test_the_revision_loads_under_its_own_name_and_computes_like_the_current_one():
    import xstable.losses

    past = import_xstable_at("HEAD")
    assert past.__name__.startswith("xstable_") and past is not sys.modules["xstable"]
    y = np.array([[1.0], [np.nan]], "float32")
    p = np.array([[0.5], [0.0]], "float32")
    before = past.losses.SafeLoss("mse")
    now = xstable.losses.SafeLoss("mse")
    assert type(before) is not type(now)
    np.testing.assert_array_equal(np.asarray(before(y, p)), np.asarray(now(y, p)))
    assert import_xstable_at("HEAD") is past  # imported once


@needs_git
def test_an_unknown_revision_names_the_argument():
    with pytest.raises(ValueError, match=r"`revision`.*Received: revision='no-such-rev'"):
        import_xstable_at("no-such-rev")


def test_no_against_revision_imports_nothing():
    assert import_against(None) is None


@needs_git
def test_a_bad_against_revision_exits_with_the_message():
    with pytest.raises(SystemExit, match=r"`revision`.*Received: revision='no-such-rev'"):
        import_against("no-such-rev")

"""atomic_write_text: a crash mid-write leaves the old file (or none), never half a file."""

import os
import subprocess
import sys
import textwrap

import pytest

from xstable.callbacks import _atomic_write
from xstable.callbacks._atomic_write import atomic_write_text


def _leftovers(directory, name):
    return sorted(entry for entry in os.listdir(directory) if entry != name)


def test_writes_complete_text_and_creates_the_directory(tmp_path):
    target = tmp_path / "new" / "report.txt"
    assert atomic_write_text(target, "hello\n") == str(target)
    assert target.read_text() == "hello\n"
    assert _leftovers(target.parent, "report.txt") == []


def test_exception_mid_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text('{"old": true}\n')
    real_fsync = os.fsync

    def crash_during_fsync(fd):
        raise OSError("disk vanished")

    monkeypatch.setattr(_atomic_write.os, "fsync", crash_during_fsync)
    with pytest.raises(OSError, match="disk vanished"):
        atomic_write_text(target, '{"new": ' + "1" * 100_000 + "}\n")
    monkeypatch.setattr(_atomic_write.os, "fsync", real_fsync)
    assert target.read_text() == '{"old": true}\n'
    assert _leftovers(tmp_path, "report.json") == []


def test_keyboard_interrupt_before_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.txt"
    target.write_text("old\n")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic_write.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new\n" * 1000)
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path, "report.txt") == []


def test_process_killed_mid_write_leaves_old_file_intact(tmp_path):
    # A real crash: the child dies (os._exit, no cleanup, no finally blocks) after half of
    # the new text has reached the temporary file. The report itself must be untouched.
    target = tmp_path / "report.txt"
    target.write_text("old complete report\n")
    child = textwrap.dedent(
        f"""
        import importlib.util, os

        # Load the module file alone: importing xstable would import Keras (slow).
        spec = importlib.util.spec_from_file_location("_atomic_write", {_atomic_write.__file__!r})
        _atomic_write = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_atomic_write)

        real_fdopen = os.fdopen

        def fdopen(fd, *args, **kwargs):
            handle = real_fdopen(fd, *args, **kwargs)
            real_write = handle.write

            def write(text):
                real_write(text[: len(text) // 2])
                handle.flush()
                os._exit(9)

            handle.write = write
            return handle

        _atomic_write.os.fdopen = fdopen
        _atomic_write.atomic_write_text({str(target)!r}, "new report " * 10000)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True)
    assert result.returncode == 9, result.stderr.decode()
    assert target.read_text() == "old complete report\n"
    # What a crash may leave is a hidden temporary file, never a partial report.
    for leftover in _leftovers(tmp_path, "report.txt"):
        assert leftover.startswith(".report.txt.") and leftover.endswith(".tmp"), leftover

"""Writes a file so that readers see either the old file or the complete new one, never a part.

A report is written when training has just gone wrong, often right before the process dies, so
a half-written report would be the worst possible outcome. The text goes to a temporary file in
the same directory (same filesystem, so the final rename is atomic), is flushed and fsync'ed,
then replaces the target with `os.replace`; the directory is fsync'ed so that the rename itself
survives a power loss where the platform allows it.
"""

import os
import tempfile

__all__ = ["atomic_write_text"]


def _fsync_directory(directory):
    # Directories cannot be opened for fsync on Windows; the rename is still atomic there.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text, encoding="utf-8"):
    """Writes `text` to `path` atomically: all of it or, if interrupted, nothing.

    Args:
        path: str or `os.PathLike`. Destination file; its directory is created if missing.
        text: str. The complete file contents.
        encoding: str. Text encoding.

    Returns:
        The destination path as a str.

    Raises:
        OSError: If the directory cannot be created or the file cannot be written; in that
            case the previous file at `path` (if any) is left untouched and no temporary file
            is left behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave the temp file.
        try:
            os.unlink(temp_path)
        except OSError:
            pass
        raise
    _fsync_directory(directory)
    return path

"""The report folder (`--out`), written without following symlinks and never outside itself.

`xstable compare` may run in a folder others can write to (a shared checkout, a CI cache). A
symlink planted there at a file the report writes (`report.json`, a log, a plot) would
otherwise make the tool overwrite the link's target, anywhere the user can write. So:

- the folder itself must be a directory owned by the user running the command;
- every path under it is reached from an open descriptor of the folder, one component at a
  time, with `O_NOFOLLOW`: a symlink in place of a subfolder is removed and replaced by a real
  folder, never entered, and a subfolder of another user is refused;
- every file is written to a fresh temporary name (`O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed
  over the final name, which replaces a symlink there instead of writing through it.
"""

import errno
import json
import os
import secrets
import stat

__all__ = ["OutputFolder", "OutputFolderError", "current_user_id", "check_output_folder"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NEW_FILE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
)


class OutputFolderError(ValueError):
    """The report folder cannot be used: missing rights, not a directory, another owner."""


def current_user_id():
    """Returns the effective user id the report folder must belong to."""
    return os.geteuid()


def check_output_folder(path):
    """Creates `path` if missing and checks that `xstable compare` may write its report there.

    Args:
        path: str, the report folder.

    Returns:
        The absolute path.

    Raises:
        OutputFolderError: If `path` is not a directory, belongs to another user, or is not
            writable.
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise OutputFolderError(
            f"The report folder `--out` is not a directory. Received: --out={path!r}. "
            "Pass a folder path (it is created if missing)."
        ) from None
    except OSError as error:
        raise OutputFolderError(
            f"Cannot create the report folder `--out` ({error.strerror}). "
            f"Received: --out={path!r}. Pass a folder you can write to."
        ) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise OutputFolderError(
            f"The report folder `--out` cannot be opened as a directory ({error.strerror}). "
            f"Received: --out={path!r}."
        ) from None
    try:
        _check_folder(fd, path)
    finally:
        os.close(fd)
    return path


def _check_folder(fd, path):
    info = os.fstat(fd)
    if info.st_uid != current_user_id():
        raise OutputFolderError(
            f"The report folder `--out` belongs to another user (uid {info.st_uid}); writing "
            "a report into a folder someone else controls is refused. Received: "
            f"--out={path!r}. Pass a folder of your own."
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputFolderError(
            f"The report folder `--out` is not writable. Received: --out={path!r}. "
            "Pass a folder you can write to."
        )


class OutputFolder:
    """Writes files under one folder, atomically and without following symlinks.

    Args:
        path: str, the report folder; created if missing and checked with
            `check_output_folder`.

    Raises:
        OutputFolderError: See `check_output_folder`.
    """

    def __init__(self, path):
        self.path = check_output_folder(path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        _check_folder(self._fd, self.path)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def join(self, relative):
        """Returns the absolute path of a relative path under the folder (for messages)."""
        return os.path.join(self.path, relative)

    def _parts(self, relative):
        parts = [p for p in relative.replace(os.sep, "/").split("/") if p not in ("", ".")]
        if not parts or ".." in parts or os.path.isabs(relative):
            raise ValueError(
                "`relative` must be a path inside the report folder. "
                f"Received: relative={relative!r}."
            )
        return parts

    def _open_folder(self, names):
        """Opens (creating, or replacing a symlink) the subfolder `names`; returns its fd."""
        fd = os.dup(self._fd)
        try:
            for name in names:
                child = self._open_child_folder(fd, name)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child_folder(self, fd, name):
        for _ in range(3):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                continue
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise OutputFolderError(
                        f"{self.join(name)!r} is in the way of a report folder and is not a "
                        "directory; move it away or pass another `--out`."
                    ) from None
                os.unlink(name, dir_fd=fd)  # A symlink is never entered: replace it.
                continue
            owner = os.fstat(child).st_uid
            if owner != current_user_id():
                os.close(child)
                raise OutputFolderError(
                    f"The report subfolder {self.join(name)!r} belongs to another user (uid "
                    f"{owner}); writing into it is refused. Remove it or pass another `--out`."
                )
            return child
        raise OutputFolderError(f"Cannot create the report folder {self.join(name)!r}.")

    def _new_file(self, relative, readable=False):
        """Creates a fresh temporary file beside `relative`.

        Returns:
            `(folder fd, temporary name, final name, file fd)`.
        """
        parts = self._parts(relative)
        folder = self._open_folder(parts[:-1])
        try:
            while True:
                temp = f".{parts[-1]}.{secrets.token_hex(6)}.tmp"
                try:
                    flags = _NEW_FILE_FLAGS
                    if readable:
                        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
                    fd = os.open(temp, flags, 0o644, dir_fd=folder)
                    return folder, temp, parts[-1], fd
                except FileExistsError:
                    continue
        except BaseException:
            os.close(folder)
            raise

    def write_bytes(self, relative, data):
        """Writes `data` to `relative` atomically; a symlink there is replaced, not followed.

        Returns:
            The absolute path written.
        """
        folder, temp, name, fd = self._new_file(relative)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=folder)
            except OSError:
                pass
            raise
        finally:
            os.close(folder)
        return self.join(relative)

    def write_text(self, relative, text):
        """Writes `text` (UTF-8) to `relative` like `write_bytes`."""
        return self.write_bytes(relative, text.encode("utf-8"))

    def write_json(self, relative, data, **dump_args):
        """Writes `data` as JSON to `relative` like `write_bytes`."""
        return self.write_text(relative, json.dumps(data, **dump_args))

    def open_log(self, relative):
        """Starts a fresh log file at `relative` and returns a binary file open for appending.

        The file is created under a temporary name and renamed into place, and the returned
        file keeps writing to that new file even if the name is later replaced. Its descriptor
        is also readable (`os.pread`), so the log's tail can be read back from the same file.
        """
        folder, temp, name, fd = self._new_file(relative, readable=True)
        try:
            os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.close(folder)
        return os.fdopen(fd, "ab", buffering=0)

"""Imports the `xstable` package as it was at a git revision, next to the working tree's.

A/B benchmarks time a change side by side in one process (docs/benchmarks.md): the
revision's `xstable/` is extracted with `git archive` into a temporary folder as the package
`xstable_<revision>`, every `xstable` name in its sources renamed the same way (imports,
`register_keras_serializable(package=...)`), so both versions load and register without
clashing. Needs the repository's git history.

    xstable_before = import_xstable_at("b0b0c9f")
    loss = xstable_before.losses.SafeLoss("mse")
"""

import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile

__all__ = ["add_against_argument", "import_against", "import_xstable_at"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_xstable_at(revision):
    """Returns the `xstable` package of `revision` (a commit, tag or branch), imported.

    Raises:
        ValueError: if git cannot resolve `revision` in this repository.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", f"{revision}^{{commit}}"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        raise ValueError(
            f"`revision` must name a commit of this repository's git history. "
            f"Received: revision={revision!r} ({error})"
        ) from error
    name = f"xstable_{commit}"
    if name in sys.modules:
        return sys.modules[name]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "xstable"],
        cwd=_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    folder = tempfile.mkdtemp(prefix=f"{name}_")
    pattern = re.compile(r"\bxstable\b")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            relative = member.name.split("/", 1)[1]
            path = os.path.join(folder, name, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = tar.extractfile(member).read()
            if member.name.endswith(".py"):
                data = pattern.sub(name, data.decode()).encode()
            with open(path, "wb") as file:
                file.write(data)
    sys.path.insert(0, folder)
    return importlib.import_module(name)


def add_against_argument(parser, what):
    """Adds the benchmarks' `--against REV` option: also time `what` as it was at REV."""
    parser.add_argument(
        "--against",
        default=None,
        metavar="REV",
        help=f"also time {what} as it was at git revision REV, in the same rounds",
    )


def import_against(revision):
    """`import_xstable_at(revision)` for a `--against` value: None without one.

    Raises:
        SystemExit: with the message naming the argument, for a revision git cannot resolve.
    """
    if revision is None:
        return None
    try:
        return import_xstable_at(revision)
    except ValueError as error:
        raise SystemExit(str(error)) from error

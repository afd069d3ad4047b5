"""The report folder: atomic writes that replace symlinks instead of writing through them."""

import os

import pytest

from xstable.compare import output as output_module
from xstable.compare.output import OutputFolder, OutputFolderError, check_output_folder


@pytest.fixture
def victim(tmp_path):
    """A file outside the report folder that a planted symlink points at."""
    path = tmp_path / "victim.txt"
    path.write_text("precious")
    return path


def test_a_symlink_at_a_file_is_replaced_not_followed(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").symlink_to(victim)
    with OutputFolder(str(out)) as folder:
        folder.write_text("report.json", "{}")
    assert victim.read_text() == "precious"
    assert not (out / "report.json").is_symlink()
    assert (out / "report.json").read_text() == "{}"


def test_a_symlink_at_a_folder_is_replaced_by_a_real_folder(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "plots").symlink_to(outside)
    with OutputFolder(str(out)) as folder:
        folder.write_bytes("plots/a.png", b"png")
    assert list(outside.iterdir()) == []
    assert (out / "plots").is_dir() and not (out / "plots").is_symlink()
    assert (out / "plots" / "a.png").read_bytes() == b"png"


def test_a_planted_temporary_name_is_never_written_through(tmp_path, victim):
    out = tmp_path / "out"
    (out / "runs" / "jax").mkdir(parents=True)
    (out / "runs" / "jax" / "t.json.tmp").symlink_to(victim)
    with OutputFolder(str(out)) as folder:
        folder.write_json("runs/jax/t.json", {"a": 1})
    assert victim.read_text() == "precious"
    assert (out / "runs" / "jax" / "t.json").read_text() == '{"a": 1}'


def test_a_log_starts_fresh_and_keeps_writing_to_its_own_file(tmp_path, victim):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "jax.log").symlink_to(victim)
    with OutputFolder(str(out)) as folder:
        log = folder.open_log("logs/jax.log")
        log.write(b"one\n")
        os.replace(out / "logs" / "jax.log", out / "logs" / "moved.log")
        (out / "logs" / "jax.log").symlink_to(victim)  # Planted again after the open.
        log.write(b"two\n")
        log.close()
    assert victim.read_text() == "precious"
    assert (out / "logs" / "moved.log").read_text() == "one\ntwo\n"


def test_paths_must_stay_inside_the_folder(tmp_path):
    with OutputFolder(str(tmp_path)) as folder:
        for bad in ("../x", "/etc/x", "a/../../x", ""):
            with pytest.raises(ValueError, match="inside the report folder"):
                folder.write_text(bad, "x")


def test_a_file_or_an_uncreatable_path_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="not a directory"):
        check_output_folder(str(tmp_path / "file"))
    with pytest.raises(OutputFolderError, match="Cannot create"):
        check_output_folder(str(tmp_path / "file" / "sub"))


def test_a_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(output_module, "current_user_id", lambda: os.geteuid() + 4242)
    with pytest.raises(OutputFolderError, match="belongs to another user"):
        check_output_folder(str(tmp_path))


def test_a_subfolder_of_another_user_is_refused(tmp_path, monkeypatch):
    with OutputFolder(str(tmp_path)) as folder:
        folder.write_text("runs/a.json", "{}")
        monkeypatch.setattr(output_module, "current_user_id", lambda: os.geteuid() + 4242)
        with pytest.raises(OutputFolderError, match="subfolder .* belongs to another user"):
            folder.write_text("runs/b.json", "{}")

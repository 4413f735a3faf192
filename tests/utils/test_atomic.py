"""vision.utils.atomic: a file is complete or absent under its final name, whatever happens while it is
written, and it gets the usual permissions."""
import errno
import os
import stat

import pytest

from vision.utils import atomic


def test_a_written_file_replaces_the_old_one_whole_with_umask_permissions(tmp_path):
    path = tmp_path / "deep" / "folder" / "notes.txt"
    previous = os.umask(0o027)
    try:
        atomic.write_text(path, "first")
        atomic.write_text(path, "second")
    finally:
        os.umask(previous)
    assert path.read_text() == "second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(path.parent) == ["notes.txt"]


def test_an_interrupted_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_write(path) as stream:
            stream.write("half of the new")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["labels.txt"]


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    path.write_bytes(b"previous checkpoint")

    real_open = open

    class FullDisk:
        """A temporary file on a disk that fills up at the first write."""

        def __init__(self, *args, **kwargs):
            self.stream = real_open(*args, **kwargs)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.stream.close()

    def fake_open(file, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(file):
            return FullDisk(file, mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(atomic.WriteError) as raised:
        atomic.save_torch({"weights": 1}, path)
    assert str(raised.value) == f"no space left on device writing {path}"
    monkeypatch.undo()
    assert path.read_bytes() == b"previous checkpoint"
    assert os.listdir(tmp_path) == ["last.pth"]


def test_a_folder_as_the_target_or_a_file_in_the_path_is_one_line(tmp_path):
    with pytest.raises(atomic.WriteError, match="is a folder, not a file"):
        atomic.write_text(tmp_path, "x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(atomic.WriteError, match="a part of the path is a file"):
        atomic.write_text(blocker / "inside.txt", "x")


def test_staged_files_publish_together_and_unpublished_ones_are_removed(tmp_path):
    model, side = tmp_path / "m.onnx", tmp_path / "m.json"
    with atomic.StagedFiles([model, side]) as staged:
        for final in (model, side):
            with open(staged.path(final), "w") as stream:
                stream.write(final.name)
        staged.publish()
    assert model.read_text() == "m.onnx" and side.read_text() == "m.json"
    with atomic.StagedFiles([tmp_path / "n.onnx"]) as staged:
        with open(staged.path(tmp_path / "n.onnx"), "w") as stream:
            stream.write("never published")
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.onnx"]


def test_stale_temporaries_of_a_killed_writer_are_found_and_only_they(tmp_path):
    stale = tmp_path / ".last.pth.tmp-abc123"
    stale.write_bytes(b"partial")
    other = tmp_path / ".last.pth.tmp-def456"
    other.write_bytes(b"partial")
    mine = tmp_path / ".notes.txt"
    mine.write_text("a user's hidden file")
    assert atomic.remove_stale_temporaries(tmp_path, "other.pth") == []
    assert atomic.remove_stale_temporaries(tmp_path, "last.pth") == [str(stale), str(other)]
    assert mine.exists()

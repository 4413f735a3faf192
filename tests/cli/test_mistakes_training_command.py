"""train_ssd.py under a new user's mistakes (issue 21): a folder that holds another run, two runs at once, a
full disk, an unwritable folder, bad schedule flags, Ctrl-C, nothing to train. Each checks the exit status,
the one-line message, that no traceback appears, that no file the user had changed and that no temporary
file is left."""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli.mistakes import error_lines, file_hashes, run_main, temporaries
from tests.conftest import REPO_ROOT
from vision.cli import train_ssd
from vision.datasets.synthetic import generate_voc_dataset
from vision.training.run_folder import LOCK_NAME, take_run_folder
from vision.utils import atomic

FAST = ["--net", "mb1-ssd-lite", "--resolution", "160", "--batch_size", "4", "--num_workers", "0", "--no_progress",
        "--seed", "0"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_voc_dataset(root, num_images=4, num_test=1, seed=4, width=96, height=72)
    return root


@pytest.fixture(scope="module")
def finished(shapes, tmp_path_factory) -> Path:
    """A checkpoint folder after a finished one-epoch run."""
    folder = tmp_path_factory.mktemp("runs") / "finished"
    assert train_ssd.main(FAST + ["--datasets", str(shapes), "--num_epochs", "1",
                                  "--checkpoint_folder", str(folder)]) == 0
    return folder


@pytest.fixture
def old_run(finished, tmp_path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(finished, folder)
    return folder


def _train(argv, capsys):
    return run_main(train_ssd.main, FAST + list(argv), capsys)


def _history(folder: Path) -> list:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def _start(argv) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "train_ssd.py")] + FAST + [str(a) for a in argv],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before {what}: {process.stderr.read()}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- 2: a new run into a folder that holds another run -------------------------------------------------
def test_a_folder_that_holds_another_run_is_refused_with_the_command_that_resumes_it(shapes, old_run, capsys):
    before = file_hashes(old_run)
    code, out, err = _train(["--datasets", shapes, "--num_epochs", "2", "--checkpoint_folder", old_run], capsys)
    (line,) = error_lines(err)
    assert code == 2 and line == (f"train_ssd.py: error: --checkpoint_folder {old_run}: holds another run (last.pth "
                                  f"after epoch 0); continue it with --resume {old_run / 'last.pth'}, pass "
                                  "--overwrite to replace it, or choose another folder")
    assert file_hashes(old_run) == before and not temporaries(old_run) and not (old_run / LOCK_NAME).exists()


def test_overwrite_replaces_the_run_and_its_history_starts_again(shapes, old_run, capsys):
    code, out, err = _train(["--datasets", shapes, "--num_epochs", "1", "--checkpoint_folder", old_run,
                             "--overwrite"], capsys)
    assert code == 0, err
    assert [record["epoch"] for record in _history(old_run)] == [0]  # one epoch 0, not two
    assert not temporaries(old_run) and not (old_run / LOCK_NAME).exists()


def test_a_second_run_into_a_folder_being_written_is_refused(shapes, tmp_path, capsys):
    folder = tmp_path / "busy"
    first = _start(["--datasets", shapes, "--num_epochs", "50", "--checkpoint_folder", folder])
    try:
        _wait_for((folder / LOCK_NAME).exists, first, "the first run to take the folder")
        code, out, err = _train(["--datasets", shapes, "--num_epochs", "1", "--checkpoint_folder", folder], capsys)
        (line,) = error_lines(err)
        assert code == 2 and f"--checkpoint_folder {folder}: another training run is writing to it" in line
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.communicate()
    # The system released the killed run's lock: the folder can be taken again.
    with take_run_folder(str(folder), overwrite=True):
        pass
    assert not temporaries(folder)


# -- 6: the disk fills up while saving ---------------------------------------------------------------------
class _FullDisk(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_is_one_line_and_the_last_checkpoint_stays(shapes, old_run, capsys, monkeypatch):
    real_open = open

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode and ".pth" in os.path.basename(path):
            real_open(path, mode, *args, **kwargs).close()
            return _FullDisk()
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", open_on_a_full_disk, raising=False)
    before = file_hashes(old_run)
    last = old_run / "last.pth"
    code, out, err = _train(["--datasets", shapes, "--num_epochs", "2", "--checkpoint_folder", old_run,
                             "--resume", last], capsys)
    (line,) = error_lines(err)
    assert code == 1 and line.startswith(f"train_ssd.py: error: no space left on device writing {old_run}")
    assert line.endswith(f"; {last} holds epoch 0: resume with --resume {last}")
    assert "RuntimeError" not in err and "inline_container" not in err
    assert file_hashes(old_run) == before  # last.pth, labels.txt and history.jsonl as they were
    assert not temporaries(old_run) and not (old_run / LOCK_NAME).exists()


# -- 7: a checkpoint folder that cannot be written ---------------------------------------------------------
def test_a_checkpoint_folder_below_a_file_is_one_line_before_any_training(shapes, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, out, err = _train(["--datasets", shapes, "--num_epochs", "1", "--checkpoint_folder", notes / "models"],
                            capsys)
    (line,) = error_lines(err)
    assert code == 2 and f"--checkpoint_folder {notes / 'models'}: cannot be created" in line
    assert "Epoch" not in out and "Training set" not in out and notes.read_text() == "mine"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"] and not temporaries(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_checkpoint_folder_is_one_line_before_any_training(shapes, tmp_path, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, out, err = _train(["--datasets", shapes, "--num_epochs", "1", "--checkpoint_folder", folder], capsys)
    finally:
        folder.chmod(0o755)
    (line,) = error_lines(err)
    assert code == 2 and f"--checkpoint_folder {folder}: cannot write there (permission denied)" in line
    assert "Epoch" not in out and list(folder.iterdir()) == []


# -- 8: schedule flags that cannot work --------------------------------------------------------------------
@pytest.mark.parametrize("flags,words", [
    (["--scheduler", "cosine", "--t_max", "0"], "--t_max 0: the cosine schedule's period"),
    (["--milestones", "10,x"], "--milestones '10,x': expected comma-separated epochs"),
    (["--milestones", "0,5"], "--milestones 0,5: epochs must be 1 or more"),
    (["--lr", "-0.01"], "--lr -0.01: must be above 0"),
    (["--gamma", "0"], "--gamma 0: must be above 0"),
])
def test_schedule_flags_are_checked_before_anything_runs(shapes, tmp_path, capsys, flags, words):
    code, out, err = _train(["--datasets", shapes, "--num_epochs", "2", "--checkpoint_folder", tmp_path / "m"] + flags,
                            capsys)
    (line,) = error_lines(err)
    assert code == 2 and words in line and not (tmp_path / "m").exists()


# -- 12: Ctrl-C during training ----------------------------------------------------------------------------
def test_ctrl_c_is_one_line_naming_the_epoch_and_the_resume_continues(shapes, tmp_path, capsys):
    folder = tmp_path / "run"
    process = _start(["--datasets", shapes, "--num_epochs", "50", "--checkpoint_folder", folder])
    try:
        _wait_for(lambda: (folder / "history.jsonl").exists(), process, "the first epoch to be saved")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130 and "Traceback" not in out + err and "KeyboardInterrupt" not in err
    epoch = int(torch.load(folder / "last.pth", weights_only=True)["epoch"])
    assert err.strip().splitlines()[-1] == (f"train_ssd.py: interrupted at epoch {epoch + 1}; resume with "
                                            f"--resume {folder / 'last.pth'}")
    assert not temporaries(folder) and not (folder / LOCK_NAME).exists()
    code, out, err = _train(["--datasets", shapes, "--num_epochs", str(epoch + 2), "--checkpoint_folder", folder,
                             "--resume", folder / "last.pth"], capsys)
    assert code == 0, err
    assert [record["epoch"] for record in _history(folder)] == list(range(epoch + 2))


# -- 20: nothing to train ----------------------------------------------------------------------------------
def test_zero_epochs_is_nothing_to_train(shapes, tmp_path, capsys):
    code, out, err = _train(["--datasets", shapes, "--num_epochs", "0", "--checkpoint_folder", tmp_path / "m"], capsys)
    assert code == 2 and error_lines(err) == ["train_ssd.py: error: nothing to train: --num_epochs 0; give "
                                              "--num_epochs 1 or more"]
    assert not (tmp_path / "m").exists()


def test_resuming_a_finished_run_is_nothing_to_train(shapes, old_run, capsys):
    before = file_hashes(old_run)
    last = old_run / "last.pth"
    code, out, err = _train(["--datasets", shapes, "--num_epochs", "1", "--checkpoint_folder", old_run,
                             "--resume", last], capsys)
    (line,) = error_lines(err)
    assert code == 2 and line == (f"train_ssd.py: error: nothing to train: {last} has finished epochs 0 to 0 and "
                                  "--num_epochs is 1; give --num_epochs 2 or more to train further")
    assert file_hashes(old_run) == before and not temporaries(old_run) and not (old_run / LOCK_NAME).exists()

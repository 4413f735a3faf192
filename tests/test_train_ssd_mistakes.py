"""train_ssd.py under a new user's mistakes: each run as the user types it, checking the exit status, the
one-line message (naming the file and the fix), and that nothing misleading is saved."""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from vision.cli.train_ssd import main as train_main
from vision.datasets.synthetic import generate_voc_dataset
from vision.ssd.registry import create_net

FAST = ["--batch_size", "4", "--num_workers", "0", "--no_progress", "--seed", "0"]
LITE = ["--net", "mb1-ssd-lite"] + FAST


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_voc_dataset(root, num_images=8, num_test=4, seed=3, width=160, height=120)
    return root


@pytest.fixture
def copy_of(shapes, tmp_path):
    def make(name: str = "data") -> Path:
        destination = tmp_path / name
        shutil.copytree(shapes, destination)
        return destination
    return make


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("train_ssd.py: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    return errors[0]


def _saved(folder: Path) -> list:
    return sorted(path.name for path in folder.glob("*.pth")) if folder.exists() else []


def test_every_image_unreadable_stops_without_saving(copy_of, tmp_path, capsys):
    root = copy_of()
    for image in (root / "JPEGImages").iterdir():
        image.write_bytes(b"not a jpeg")
    folder = tmp_path / "models"
    code = train_main(LITE + ["--datasets", str(root), "--num_epochs", "2", "--checkpoint_folder", str(folder)])
    line = _error_line(capsys)
    assert code == 2
    assert str(root) in line and "read none of its 8 samples" in line and "JPEGImages" in line
    assert _saved(folder) == []


def test_ids_with_an_image_extension_are_explained(copy_of, tmp_path, capsys):
    root = copy_of()
    listing = root / "ImageSets" / "Main" / "trainval.txt"
    listing.write_text("".join(f"{line}.jpg\n" for line in listing.read_text().split()))
    folder = tmp_path / "models"
    code = train_main(LITE + ["--datasets", str(root), "--num_epochs", "1", "--checkpoint_folder", str(folder)])
    line = _error_line(capsys)
    assert code == 2 and "extension ('000000.jpg')" in line and "without it ('000000')" in line
    assert _saved(folder) == []


def test_more_than_half_skipped_is_warned_at_the_end_of_the_epoch(copy_of, tmp_path, caplog):
    root = copy_of()
    for image in sorted((root / "JPEGImages").iterdir())[:6]:
        image.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="train_ssd"):
        code = train_main(LITE + ["--datasets", str(root), "--num_epochs", "1",
                                  "--checkpoint_folder", str(tmp_path / "m")])
    assert code == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "train_ssd"]
    assert any("skipped 6 of 8 samples (75%)" in message for message in warnings), warnings


def test_empty_image_lists_name_the_file(copy_of, tmp_path, capsys):
    root = copy_of()
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("")
    assert train_main(LITE + ["--datasets", str(root), "--checkpoint_folder", str(tmp_path / "m")]) == 2
    line = _error_line(capsys)
    assert "trainval.txt: lists no images" in line
    good = copy_of("good")
    validation = copy_of("validation")
    (validation / "ImageSets" / "Main" / "test.txt").write_text("\n")
    assert train_main(LITE + ["--datasets", str(good), "--validation_dataset", str(validation),
                              "--checkpoint_folder", str(tmp_path / "m")]) == 2
    line = _error_line(capsys)
    assert "test.txt: lists no images, so there is nothing to evaluate" in line


def test_checkpoint_folder_that_is_a_file(shapes, tmp_path, capsys):
    existing = tmp_path / "models"
    existing.write_text("notes")
    assert train_main(LITE + ["--datasets", str(shapes), "--checkpoint_folder", str(existing)]) == 2
    assert "--checkpoint_folder" in _error_line(capsys) and existing.read_text() == "notes"


def test_resume_with_another_net_type_names_the_right_one(shapes, tmp_path, capsys):
    folder = tmp_path / "lite"
    assert train_main(LITE + ["--datasets", str(shapes), "--num_epochs", "1", "--checkpoint_folder", str(folder)]) == 0
    capsys.readouterr()
    last = folder / "last.pth"
    assert train_main(["--net", "mb1-ssd"] + FAST + ["--datasets", str(shapes), "--resume", str(last),
                                                     "--checkpoint_folder", str(tmp_path / "m")]) == 2
    assert f"{last}: written by a mb1-ssd-lite run, not mb1-ssd; run with --net mb1-ssd-lite" in _error_line(capsys)
    (bare,) = folder.glob("mb1-ssd-lite-Epoch-0-*.pth")
    # No --net: the default vgg16-ssd.
    assert train_main(FAST + ["--datasets", str(shapes), "--resume", str(bare),
                              "--checkpoint_folder", str(tmp_path / "m")]) == 2
    line = _error_line(capsys)
    assert "this checkpoint is a mb1-ssd-lite (6 classes), not a vgg16-ssd; run with --net mb1-ssd-lite" in line


def test_base_net_given_a_whole_ssd_suggests_pretrained_ssd(shapes, tmp_path, capsys):
    whole = tmp_path / "whole.pth"
    torch.save(create_net("mb1-ssd-lite", 21).state_dict(), whole)
    assert train_main(LITE + ["--datasets", str(shapes), "--base_net", str(whole),
                              "--checkpoint_folder", str(tmp_path / "m")]) == 2
    line = _error_line(capsys)
    assert str(whole) in line and "a whole SSD, not a base net" in line and "--pretrained_ssd" in line


def _history(folder: Path) -> list:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def test_resume_unfreezing_the_base_net_resets_the_optimizer_and_continues(shapes, tmp_path, caplog):
    folder = tmp_path / "m"
    assert train_main(LITE + ["--datasets", str(shapes), "--num_epochs", "1", "--freeze_base_net",
                              "--checkpoint_folder", str(folder)]) == 0
    with caplog.at_level(logging.INFO, logger="train_ssd"):
        assert train_main(LITE + ["--datasets", str(shapes), "--num_epochs", "2", "--resume", str(folder / "last.pth"),
                                  "--checkpoint_folder", str(folder)]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("parameter groups changed (--freeze_base_net): optimizer state reset" in m for m in messages), messages
    assert [r["epoch"] for r in _history(folder)] == [0, 1]
    last = torch.load(folder / "last.pth", weights_only=True)
    assert len(last["optimizer"]["param_groups"]) == 3 and last["epoch"] == 1


def test_resume_with_a_new_lr_and_scheduler_follows_the_flags(shapes, tmp_path, caplog):
    folder = tmp_path / "m"
    assert train_main(LITE + ["--datasets", str(shapes), "--num_epochs", "1", "--checkpoint_folder", str(folder)]) == 0
    with caplog.at_level(logging.INFO, logger="train_ssd"):
        assert train_main(LITE + ["--datasets", str(shapes), "--num_epochs", "3", "--lr", "0.01",
                                  "--scheduler", "cosine", "--t_max", "4", "--resume", str(folder / "last.pth"),
                                  "--checkpoint_folder", str(folder)]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "--lr 0.01 replaces the checkpoint's 0.001" in messages
    assert "--scheduler cosine replaces the checkpoint's multi-step" in messages
    assert "scheduler restarted at epoch 1" in messages
    # The new schedule starts at the resumed epoch: 0.01, then cosine with t_max 4.
    assert [r["lr"] for r in _history(folder)] == pytest.approx([0.001, 0.01, 0.01 * (1 + 0.7071067811865476) / 2])


def test_stale_partial_saves_are_removed_and_files_follow_the_umask(shapes, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    stale = folder / ".last.pth.tmp-abc123"
    stale.write_bytes(b"\0" * 1000)
    kept = folder / ".tmp-notes.txt"
    kept.write_text("not ours")
    previous = os.umask(0o022)
    try:
        assert train_main(LITE + ["--datasets", str(shapes), "--num_epochs", "1",
                                  "--checkpoint_folder", str(folder)]) == 0
    finally:
        os.umask(previous)
    assert not stale.exists() and kept.exists()
    for path in folder.glob("*.pth"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path

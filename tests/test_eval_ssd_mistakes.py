"""eval_ssd.py under a new user's mistakes: an empty test list, a bad --label_file, a checkpoint of another
net type, --dataset_type open_images on a VOC root. Each is one line naming the file, exit status 1."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vision.cli.eval_ssd import main as eval_main
from vision.datasets.synthetic import generate_voc_dataset
from vision.ssd.registry import create_net


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    generate_voc_dataset(root, num_images=4, num_test=2, seed=1, width=160, height=120)
    return root


@pytest.fixture(scope="module")
def model(voc, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "mb1-ssd-lite.pth"
    num_classes = len((voc / "labels.txt").read_text().split()) + 1
    torch.save(create_net("mb1-ssd-lite", num_classes).state_dict(), path)
    return path


def _error(argv, capsys) -> str:
    code = eval_main([str(a) for a in argv + ["--num_workers", "0", "--device", "cpu"]])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_empty_test_list_names_the_file(voc, model, tmp_path, capsys):
    root = tmp_path / "voc"
    shutil.copytree(voc, root)
    (root / "ImageSets" / "Main" / "test.txt").write_text("")
    err = _error(["--net", "mb1-ssd-lite", "--trained_model", model, "--dataset_type", "voc", "--dataset", root,
                  "--eval_dir", tmp_path / "eval"], capsys)
    assert err == (f"error: {root / 'ImageSets' / 'Main' / 'test.txt'}: lists no images, so there is nothing to "
                   "evaluate; add image ids to it")


@pytest.mark.parametrize("label_file", ["missing.txt", "folder"])
def test_bad_label_file_says_label_file(voc, model, tmp_path, capsys, label_file):
    (tmp_path / "folder").mkdir()
    err = _error(["--net", "mb1-ssd-lite", "--trained_model", model, "--dataset_type", "voc", "--dataset", voc,
                  "--label_file", tmp_path / label_file, "--eval_dir", tmp_path / "eval"], capsys)
    assert str(tmp_path / label_file) in err and "label file" in err


def test_checkpoint_of_another_net_type_with_the_default_net(voc, model, tmp_path, capsys):
    err = _error(["--trained_model", model, "--dataset_type", "voc", "--dataset", voc, "--eval_dir", tmp_path / "eval"],
                 capsys)
    assert err.endswith("not a vgg16-ssd; run with --net mb1-ssd-lite") and "this checkpoint is a mb1-ssd-lite" in err


def test_open_images_type_on_a_voc_root_names_the_flag(voc, model, tmp_path, capsys):
    err = _error(["--net", "mb1-ssd-lite", "--trained_model", model, "--dataset_type", "open_images", "--dataset", voc,
                  "--eval_dir", tmp_path / "eval"], capsys)
    assert "not an Open Images root" in err and "--dataset_type" in err and "label_file=" not in err

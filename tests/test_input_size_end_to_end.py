"""The input size travels with the model: train at 512 and 512x288, evaluate, resume and export without
repeating the size (sidecars and last.pth), and the ONNX file at 512x288 in ONNX Runtime."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vision.cli.convert_to_caffe2_models import main as convert_main
from vision.cli.eval_ssd import main as eval_main
from vision.cli.train_ssd import main as train_main
from vision.datasets.synthetic import generate_voc_dataset
from vision.ssd.sidecar import read_sidecar, sidecar_path

TRAIN = ["--net", "mb1-ssd-lite", "--batch_size", "2", "--num_workers", "0", "--no_progress", "--lr", "0.01",
         "--seed", "0", "--num_epochs", "1"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_voc_dataset(root, num_images=12, num_test=2, seed=5, width=128, height=96)
    return root


@pytest.fixture(scope="module")
def train_at(shapes, tmp_path_factory):
    """``train_at((width, height))``: one epoch at that size, once per module: ``(folder, model, size)``."""
    runs = {}

    def train(size):
        if size not in runs:
            width, height = size
            folder = tmp_path_factory.mktemp(f"models-{width}x{height}")
            resolution = str(width) if width == height else f"{width}x{height}"
            assert train_main(TRAIN + ["--datasets", str(shapes), "--checkpoint_folder", str(folder),
                                       "--resolution", resolution]) == 0
            (model,) = folder.glob("mb1-ssd-lite-Epoch-*.pth")
            runs[size] = folder, model, size
        return runs[size]
    return train


@pytest.fixture(params=[(512, 512), (512, 288)], ids=["512", "512x288"])
def trained(request, train_at):
    return train_at(request.param)


@pytest.fixture
def trained_wide(train_at):
    return train_at((512, 288))


def test_training_records_the_size_beside_every_checkpoint(trained):
    folder, model, size = trained
    for path in (model, folder / "last.pth"):
        info = read_sidecar(path)
        assert info.net_type == "mb1-ssd-lite" and info.image_size == size
        assert info.class_names == ["BACKGROUND", "circle", "square", "triangle", "star", "ring"]
    last = torch.load(folder / "last.pth", weights_only=True)
    assert last["image_size"] == list(size) and last["net_type"] == "mb1-ssd-lite"


def test_evaluation_reads_the_size_from_the_sidecar(trained, shapes, tmp_path, capsys):
    folder, model, size = trained
    assert eval_main(["--net", "mb1-ssd-lite", "--trained_model", str(model), "--dataset", str(shapes),
                      "--eval_dir", str(tmp_path / "eval")]) == 0
    assert "Average Precision Across All Classes" in capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["image_size"] == list(size)


def test_a_checkpoint_evaluates_at_another_size_than_it_was_trained_at(trained_wide, shapes, tmp_path):
    _, model, _ = trained_wide
    assert eval_main(["--net", "mb1-ssd-lite", "--trained_model", str(model), "--dataset", str(shapes),
                      "--eval_dir", str(tmp_path / "eval"), "--resolution", "320x240"]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["image_size"] == [320, 240]


def test_resuming_keeps_the_size_without_the_flag(trained_wide, shapes, tmp_path):
    folder, _, size = trained_wide
    resumed = tmp_path / "resumed"
    assert train_main(TRAIN[:-1] + ["2", "--datasets", str(shapes), "--checkpoint_folder", str(resumed),
                                    "--resume", str(folder / "last.pth")]) == 0
    last = torch.load(resumed / "last.pth", weights_only=True)
    assert last["epoch"] == 1 and last["image_size"] == [512, 288]


def test_a_checkpoint_without_sidecar_is_the_native_size(trained_wide, shapes, tmp_path):
    _, model, _ = trained_wide
    bare = tmp_path / "bare.pth"
    bare.write_bytes(model.read_bytes())
    assert not Path(sidecar_path(bare)).exists()
    assert eval_main(["--net", "mb1-ssd-lite", "--trained_model", str(bare), "--dataset", str(shapes),
                      "--eval_dir", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["image_size"] == [300, 300]


def test_the_sidecar_of_another_net_type_is_a_one_line_error(trained_wide, shapes, tmp_path, capsys):
    _, model, _ = trained_wide
    assert eval_main(["--net", "mb1-ssd", "--trained_model", str(model), "--dataset", str(shapes),
                      "--eval_dir", str(tmp_path / "eval")]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "the checkpoint is a mb1-ssd-lite, not a mb1-ssd" in error


def test_onnx_export_at_512x288_runs_in_onnx_runtime_at_that_size(trained_wide, tmp_path):
    folder, model, _ = trained_wide
    from vision.export.onnx_predictor import OnnxPredictor
    from vision.runtime.detector import load_detector

    output = tmp_path / "wide.onnx"
    # No --resolution: the size comes from the sidecar; the script itself checks ONNX Runtime against PyTorch.
    assert convert_main(["mb1-ssd-lite", str(model), str(folder / "labels.txt"), "--output", str(output)]) == 0
    metadata = json.loads((tmp_path / "wide.json").read_text())
    assert metadata["image_size"] == [512, 288] and metadata["input_shape"] == [1, 3, 288, 512]
    predictor = OnnxPredictor(output)
    assert predictor.size == (512, 288)
    image = np.asarray(np.random.default_rng(0).integers(0, 256, size=(96, 128, 3)), dtype=np.uint8)
    assert predictor.preprocess([image]).shape == (1, 3, 288, 512)
    pytorch = load_detector("mb1-ssd-lite", str(model), str(folder / "labels.txt"), device="cpu")
    assert pytorch.input_size == (512, 288)
    # The same preprocessed batch through both: ONNX Runtime's outputs are PyTorch's, one per prior.
    batch = predictor.preprocess([image])
    outputs = predictor.forward(batch)
    with torch.no_grad():
        expected_scores, expected_boxes = pytorch.predictor.net(torch.from_numpy(batch))
    assert outputs["scores"].shape == (1, 4662, 6) and outputs["boxes"].shape == (1, 4662, 4)
    np.testing.assert_allclose(outputs["scores"], expected_scores.numpy(), atol=1e-4)
    np.testing.assert_allclose(outputs["boxes"], expected_boxes.numpy(), atol=1e-4)
    boxes, labels, probs = predictor.predict(image, prob_threshold=0.05)
    assert len(labels) > 0 and (labels >= 1).all() and boxes.shape == (len(labels), 4)
    with pytest.raises(ValueError, match="exported at 512x288, not 300x300"):
        load_detector("mb1-ssd-lite", str(output), str(folder / "labels.txt"), backend="onnx", resolution="300")

"""ONNX export of every net type: the file contract, ONNX Runtime and OpenCV DNN against PyTorch."""
import json

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from tests.export.nets import CLASS_NAMES, cached_net, exported_model, realistic_net, rgb_photo
from vision.export.checks import check_onnxruntime, check_opencv_dnn, pytorch_outputs, sample_images
from vision.export.metadata import read_metadata, side_file_paths
from vision.export.onnx_export import export_onnx, resolve_exporter
from vision.ssd.registry import NET_TYPES


def _dims(value_info):
    return [dim.dim_param or dim.dim_value for dim in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("net_type", list(NET_TYPES))
def test_every_net_exports_and_matches_pytorch_in_onnxruntime(net_type, dynamic_batch):
    path = exported_model(net_type, dynamic_batch)
    net = cached_net(net_type)
    (width, height), priors = net.config.image_size, net.priors.shape[0]
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["input_0"]
    assert _dims(model.graph.input[0]) == ["batch" if dynamic_batch else 1, 3, height, width]
    assert [o.name for o in model.graph.output] == ["scores", "boxes"]

    result = check_onnxruntime(str(path), net)
    assert result.ok, str(result)
    assert result.max_abs_difference < 1e-4

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(1).standard_normal((3 if dynamic_batch else 1, 3, height, width)).astype(np.float32)
    scores, boxes = session.run(["scores", "boxes"], {"input_0": batch})
    assert scores.shape == (len(batch), priors, len(CLASS_NAMES)) and boxes.shape == (len(batch), priors, 4)
    np.testing.assert_allclose(scores.sum(axis=2), 1.0, atol=1e-5)  # softmaxed
    expected_scores, expected_boxes = pytorch_outputs(net, batch)
    # ssdlite320-mb3-large (~100 layers, SE, hardswish) on this std-normal batch: PyTorch's own float32
    # scores are 1e-4 off its float64 ones, so two float32 runtimes may differ by twice that.
    score_tolerance = 3e-4 if net_type == "ssdlite320-mb3-large" else 1e-4
    np.testing.assert_allclose(scores, expected_scores, atol=score_tolerance)
    np.testing.assert_allclose(boxes, expected_boxes, atol=1e-4)


def test_static_export_rejects_another_batch_size():
    path = exported_model("mb1-ssd-lite", False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"input_0": np.zeros((2, 3, 300, 300), np.float32)})


def test_side_files_let_a_program_use_the_model_without_this_package():
    path = exported_model("mb2-ssd-lite", True)
    json_path, labels_path = side_file_paths(path)
    assert labels_path.endswith("mb2-ssd-lite-dynamic-torchscript.labels.txt")
    assert open(labels_path).read().splitlines() == CLASS_NAMES
    info = json.loads(open(json_path).read())
    config = cached_net("mb2-ssd-lite").config
    assert info["net_type"] == "mb2-ssd-lite" and info["class_names"] == CLASS_NAMES
    assert info["image_size"] == 300 and info["image_mean"] == [127.0] * 3 and info["image_std"] == 128.0
    assert (info["center_variance"], info["size_variance"]) == (config.center_variance, config.size_variance)
    assert info["input_name"] == "input_0" and info["output_names"] == ["scores", "boxes"]

    # What another program would do: the JSON's preprocessing, then onnxruntime.
    image = rgb_photo()
    resized = cv2.resize(image, (info["image_size"],) * 2).astype(np.float32)
    blob = ((resized - np.float32(info["image_mean"])) / info["image_std"]).transpose(2, 0, 1)[None]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, boxes = session.run(info["output_names"], {info["input_name"]: blob})
    expected_scores, expected_boxes = pytorch_outputs(cached_net("mb2-ssd-lite"), blob)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    np.testing.assert_allclose(boxes, expected_boxes, atol=1e-4)


def test_vgg_mean_and_metadata_embedded_in_the_model():
    path = exported_model("vgg16-ssd", False)
    embedded = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    metadata = read_metadata(path, embedded=None)
    assert json.loads(embedded["ssd"])["image_mean"] == metadata.image_mean == [123.0, 117.0, 104.0]
    assert metadata.image_std == 1.0 and metadata.image_size == 300 and metadata.num_priors == 8732


def test_relu6_of_mb2_ssd_lite_exports_as_clip():
    model = onnx.load(str(exported_model("mb2-ssd-lite", False)))
    op_types = {node.op_type for node in model.graph.node}
    assert "Clip" in op_types


@pytest.mark.parametrize("net_type", ["mb1-ssd", "mb2-ssd-lite"])
def test_opencv_dnn_runs_mb1_ssd_and_mb2_ssd_lite(net_type):
    path = exported_model(net_type, False)
    result = check_opencv_dnn(str(path), cached_net(net_type), read_metadata(path))
    assert result.ok, str(result)
    assert result.max_abs_difference < 1e-4


def test_dynamo_exporter_emits_opset_18_that_matches_pytorch():
    path = exported_model("mb1-ssd-lite", True, exporter="dynamo")
    model = onnx.load(str(path))
    assert {entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")} == {18}
    assert not list(path.parent.glob(path.name + ".data"))  # one self-contained file
    result = check_onnxruntime(str(path), cached_net("mb1-ssd-lite"))
    assert result.ok, str(result)
    assert read_metadata(path).exporter == "dynamo"


def test_exporter_choice_follows_the_opset():
    assert resolve_exporter("auto", 11) == "torchscript"
    assert resolve_exporter("auto", 17) == "torchscript"
    assert resolve_exporter("auto", 18) == "dynamo"
    with pytest.raises(ValueError, match="11-17"):
        resolve_exporter("torchscript", 18)
    with pytest.raises(ValueError, match="17 or newer"):
        resolve_exporter("dynamo", 13)


def test_check_fails_when_the_file_does_not_match_the_net():
    path = exported_model("mb1-ssd-lite", False)
    changed = realistic_net("mb1-ssd-lite", len(CLASS_NAMES))
    last_conv = [m for m in changed.regression_headers[0].modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.bias.add_(0.1)
    result = check_onnxruntime(str(path), changed)
    assert not result.ok and result.max_abs_difference > 1e-4
    assert "FAILED" in str(result)


def test_export_needs_one_name_per_class(tmp_path):
    with pytest.raises(ValueError, match="2 class names for a net with 3 classes"):
        export_onnx(cached_net("sq-ssd-lite"), "sq-ssd-lite", CLASS_NAMES[:2], tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


def test_training_mode_net_is_exported_in_test_mode_and_left_as_it_was(tmp_path):
    net = realistic_net("sq-ssd-lite", len(CLASS_NAMES))
    net.is_test = False
    net.train()
    export_onnx(net, "sq-ssd-lite", CLASS_NAMES, tmp_path / "sq.onnx")
    assert net.is_test is False and net.training
    assert check_onnxruntime(str(tmp_path / "sq.onnx"), net, images=sample_images(1)).ok


class _WrongDnn:
    """Stands for an OpenCV that misreads a graph: it runs, but returns 36 priors instead of 3000
    (what OpenCV 5.0 does with dynamo exports of mb3-*-ssd-lite)."""

    def setInput(self, blob, name):
        pass

    def forward(self, names):
        return [np.zeros((1, 36, 3), np.float32), np.zeros((1, 36, 4), np.float32)]


def test_opencv_that_cannot_run_or_misreads_the_file_is_a_failed_check_not_an_exception(monkeypatch):
    path = exported_model("mb1-ssd", False)
    metadata = read_metadata(path)
    monkeypatch.setattr(cv2.dnn, "readNetFromONNX", lambda p: _WrongDnn())
    result = check_opencv_dnn(str(path), cached_net("mb1-ssd"), metadata)
    assert not result.ok and "returns scores (1, 36, 3)" in result.message

    def unsupported(p):
        raise cv2.error("OpenCV(5.0.0) reshape_layer.cpp:1: error: (-215:Assertion failed) unsupported in function 'x'")

    monkeypatch.setattr(cv2.dnn, "readNetFromONNX", unsupported)
    result = check_opencv_dnn(str(path), cached_net("mb1-ssd"), metadata)
    assert not result.ok and "cannot run the file" in result.message and "Assertion failed" in result.message

"""INT8 export (vision.export.quantize, convert_to_caffe2_models.py --int8) and its calibration folders.

The nets are the deterministic reference weights with rescaled heads (tests/export/nets.py), not trained
ones: a trained model is out of reach of a fast test on a CPU. Their detections are many overlapping
boxes with no real objects behind them, the hardest case for quantization, so the overlap asked here is
looser (IoU above 0.5 rather than 0.9); benchmarks/bench_deploy.py measures trained models' mAP.
"""
import functools

import cv2
import numpy as np
import onnx
import pytest

from tests.export.nets import CLASS_NAMES, exported_model, label_path, realistic_net, saved_checkpoint, work_dir
from vision.cli import convert_to_caffe2_models
from vision.datasets.synthetic import generate_voc_dataset
from vision.export.compare import check_int8_detections, unmatched
from vision.export.metadata import read_metadata
from vision.export.onnx_predictor import OnnxPredictor
from vision.export.quantize import (
    ImageCalibrationReader,
    choose_calibration_images,
    head_node_names,
    int8_output_path,
    network_node_names,
    quantize_onnx,
    read_rgb,
)


@functools.lru_cache(maxsize=None)
def calibration_folder():
    """8 synthetic photos (a VOC root: JPEGImages/ inside), made once per session."""
    root = work_dir() / "calibration"
    generate_voc_dataset(root, num_images=6, num_test=2, seed=3)
    return root


@functools.lru_cache(maxsize=None)
def quantized(net_type: str, with_postprocess: bool = False):
    float_path = exported_model(net_type, with_postprocess=with_postprocess)
    images = choose_calibration_images(calibration_folder(), 8)
    int8_path = int8_output_path(float_path)
    quantize_onnx(float_path, int8_path, images)
    return float_path, int8_path, images


def test_int8_output_path_and_side_files():
    float_path, int8_path, images = quantized("mb1-ssd-lite")
    assert int8_path.endswith("-static-torchscript.int8.onnx")
    metadata = read_metadata(int8_path)
    assert metadata.class_names == CLASS_NAMES
    assert metadata.quantization["calibration_images"] == len(images) == 8
    assert metadata.quantization["calibration_method"] == "minmax"
    assert metadata.quantization["calibration_input_size"] == [300, 300]
    assert open(int8_path.replace(".onnx", ".labels.txt")).read().split() == CLASS_NAMES
    model = onnx.load(int8_path)
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The head of the graph after the last convolutions (softmax, box decoding) stays float32.
    softmax = [node for node in model.graph.node if node.op_type == "Softmax"]
    producers = {output: node for node in model.graph.node for output in node.output}
    assert softmax and producers[softmax[0].input[0]].op_type != "DequantizeLinear"


@pytest.mark.parametrize("net_type", ["mb1-ssd-lite", "sq-ssd-lite"])
def test_int8_file_loads_in_onnxruntime_and_overlaps_float32(net_type):
    float_path, int8_path, images = quantized(net_type)
    photos = [read_rgb(path) for path in images]
    int8 = OnnxPredictor(int8_path)
    assert int8.size == OnnxPredictor(float_path).size
    int8_detections = int8.predict_batch(photos, prob_threshold=0.3)
    float_detections = OnnxPredictor(float_path).predict_batch(photos, prob_threshold=0.3)
    total = missed = 0
    for reference, candidate in zip(float_detections, int8_detections):
        count, misses, _ = unmatched(reference, candidate, score_threshold=0.5, iou_threshold=0.5)
        total, missed = total + count, missed + misses
    assert total > 20
    # NMS over hundreds of near-identical untrained boxes keeps different representatives after small
    # score changes, so some detections lose their partner; a broken quantization loses nearly all.
    assert missed <= 0.2 * total, f"{missed} of {total} float32 detections above 0.5 have no INT8 partner"
    batch = int8.preprocess(photos[:1])
    float_outputs, int8_outputs = OnnxPredictor(float_path).forward(batch), int8.forward(batch)
    assert np.abs(int8_outputs["scores"] - float_outputs["scores"]).mean() < 0.02
    assert np.median(np.abs(int8_outputs["boxes"] - float_outputs["boxes"])) < 0.01  # 3 pixels at 300
    result = check_int8_detections(int8_path, str(float_path), photos[:2])
    assert result.message.startswith(f"{sum(1 for d in float_detections[:2] for p in d[2] if p > 0.5)} float32")


def weights_are_quantized(model: onnx.ModelProto, node_names) -> dict:
    """{node name: whether its weight input comes from a DequantizeLinear} for the named Conv nodes."""
    producers = {output: node for node in model.graph.node for output in node.output}
    return {node.name: node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear"
            for node in model.graph.node if node.name in node_names}


def test_heads_last_convolutions_stay_float32_by_default_and_quantize_on_request(tmp_path):
    float_path, int8_path, images = quantized("mb1-ssd-lite")
    float_model = onnx.load(float_path)
    for index, node in enumerate(float_model.graph.node):  # quantize_onnx names unnamed nodes the same way
        node.name = node.name or f"node_{index}_{node.op_type}"
    heads = head_node_names(float_model)
    # 6 classification and 6 regression layers; the depthwise convolutions before them are not heads' last.
    assert len(heads) == 12
    assert sum("classification_headers" in name for name in heads) == 6
    assert all(name.endswith("Conv") for name in heads)
    default = onnx.load(int8_path)
    assert weights_are_quantized(default, heads) == {name: False for name in heads}
    others = network_node_names(float_model) & {node.name for node in float_model.graph.node if node.op_type == "Conv"}
    assert all(weights_are_quantized(default, others - heads).values())
    assert read_metadata(int8_path).quantization["heads"] == "float32"

    all_int8 = tmp_path / "heads-int8.onnx"
    metadata = quantize_onnx(float_path, all_int8, images, heads="int8")
    assert weights_are_quantized(onnx.load(all_int8), heads) == {name: True for name in heads}
    assert metadata.quantization["heads"] == "int8"
    assert metadata.quantization["quantized_nodes"] == read_metadata(int8_path).quantization["quantized_nodes"] + 12
    with pytest.raises(ValueError, match="heads must be one of float, int8"):
        quantize_onnx(float_path, tmp_path / "x.onnx", images, heads="int4")


def test_with_postprocess_only_the_network_part_is_quantized():
    float_path, int8_path, images = quantized("mb1-ssd-lite", with_postprocess=True)
    model = onnx.load(int8_path)
    postprocess_nodes = [node for node in model.graph.node if node.name.startswith("postprocess/")]
    assert postprocess_nodes and not any(node.op_type in ("QuantizeLinear", "DequantizeLinear")
                                         for node in postprocess_nodes)
    assert "postprocess" not in "".join(sorted(network_node_names(onnx.load(float_path))))
    boxes, labels, probs = OnnxPredictor(int8_path).predict(read_rgb(images[0]), prob_threshold=0.5)
    assert boxes.shape[1:] == (4,) and len(labels) == len(probs)


def test_calibration_reader_streams_the_predictors_preprocessing():
    images = choose_calibration_images(calibration_folder(), 3)
    predictor = OnnxPredictor(exported_model("mb1-ssd-lite"))
    reader = ImageCalibrationReader(images, predictor.input_name, predictor.preprocess)
    feeds = [reader.get_next() for _ in range(3)]
    assert reader.get_next() is None and len(reader) == 3
    expected = predictor.preprocess([cv2.cvtColor(cv2.imread(images[1]), cv2.COLOR_BGR2RGB)])
    np.testing.assert_array_equal(feeds[1]["input_0"], expected)
    reader.set_range(2, 3)
    np.testing.assert_array_equal(reader.get_next()["input_0"], feeds[2]["input_0"])


def test_fewer_readable_images_than_requested_warns_then_uses_them(tmp_path):
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"photo{index}.png"), np.full((40, 50, 3), 60 * index, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("no image")
    messages = []
    chosen = choose_calibration_images(tmp_path, 10, warn=messages.append)
    assert sorted(path.rsplit("/", 1)[1] for path in chosen) == ["photo0.png", "photo1.png", "photo2.png"]
    assert messages == [f"{tmp_path}: 3 readable images, fewer than the 10 requested; calibrating on 3"]
    assert choose_calibration_images(tmp_path, 2, seed=1) == choose_calibration_images(tmp_path, 2, seed=1)


def test_cli_with_no_readable_calibration_image_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "broken.jpg").write_bytes(b"not a jpeg")
    output = tmp_path / "out" / "model.onnx"
    code = convert_to_caffe2_models.main(["mb1-ssd-lite", str(saved_checkpoint("mb1-ssd-lite")),
                                          str(label_path("mb1-ssd-lite")), "--output", str(output), "--int8",
                                          "--calibration_data", str(empty)])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"error: {empty}: no readable images to calibrate on (1 image files, none readable)\n"
    assert not output.parent.exists()
    assert convert_to_caffe2_models.main(["mb1-ssd-lite", str(saved_checkpoint("mb1-ssd-lite")),
                                          str(label_path("mb1-ssd-lite")), "--int8"]) == 1
    assert "--int8 needs --calibration_data" in capsys.readouterr().err


def test_cli_int8_writes_both_files_and_reports_latency_and_map(tmp_path, capsys):
    class_names = ["BACKGROUND", *(calibration_folder() / "labels.txt").read_text().split()]
    checkpoint, labels = tmp_path / "shapes.pth", tmp_path / "shapes-labels.txt"
    realistic_net("mb1-ssd-lite", len(class_names)).save(str(checkpoint))
    labels.write_text("".join(f"{name}\n" for name in class_names))
    output = tmp_path / "out" / "model.onnx"
    code = convert_to_caffe2_models.main(["mb1-ssd-lite", str(checkpoint), str(labels), "--output", str(output),
                                          "--int8", "--calibration_data", str(calibration_folder()),
                                          "--calibration_images", "4", "--int8_float_layers", "0",
                                          "--validation_dataset", str(calibration_folder())])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(path.name for path in output.parent.iterdir()) == [
        "model.int8.json", "model.int8.labels.txt", "model.int8.onnx", "model.json", "model.labels.txt", "model.onnx"]
    lines = captured.out.splitlines()
    assert any(line.startswith("Quantized to INT8") and "heads in float32, minmax calibration on 4 images" in line
               for line in lines)
    assert any("INT8 against float32 in ONNX Runtime" in line for line in lines)
    latency = [line for line in lines if line.startswith("Latency at batch 1")]
    assert len(latency) == 1 and "float32" in latency[0] and "INT8" in latency[0]
    assert any(line.startswith("mAP (VOC07) on 2 images of") for line in lines)


def test_run_ssd_example_runs_an_int8_file_with_session_options(tmp_path, capsys):
    from vision.cli import run_ssd_example

    float_path, int8_path, images = quantized("mb1-ssd-lite")
    labels = int8_path.replace(".onnx", ".labels.txt")
    code = run_ssd_example.main(["mb1-ssd-lite", int8_path, labels, images[0], "--backend", "onnx",
                                 "--onnx_threads", "1", "--onnx_optimization", "basic",
                                 "--output", str(tmp_path / "out.jpg")])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"{images[0]}: ")
    assert (tmp_path / "out.jpg").is_file()

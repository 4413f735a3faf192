"""INT8 options (vision.export.quantize.Int8Settings) and the export pipeline's use of the sensitivity pass.

Nets: the calibrated deterministic weights of tests/export/nets.py, so the outputs are compared with the
float32 file's loosely; benchmarks/bench_deploy.py measures speed and trained-model mAP per option.
"""
import numpy as np
import onnx
import pytest

from tests.export.nets import exported_model, realistic_net
from tests.export.test_quantize import calibration_folder
from vision.cli import convert_to_caffe2_models
from vision.export import pipeline
from vision.export.metadata import read_metadata
from vision.export.onnx_predictor import OnnxPredictor
from vision.export.quantize import Int8Settings, PreparedModel, choose_calibration_images, quantize_onnx, read_rgb
from vision.export.sensitivity import SensitivityResult

VARIANTS = {
    "qoperator": Int8Settings(quant_format="qoperator"),
    "u8u8": Int8Settings(weights="uint8"),
    "reduce_range": Int8Settings(reduce_range=True),
    "per_tensor": Int8Settings(per_channel=False),
    "float_depthwise": Int8Settings(float_depthwise=True),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    images = choose_calibration_images(calibration_folder(), 4)
    return PreparedModel(exported_model("mb1-ssd-lite"), images, tmp_path_factory.mktemp("prepared"))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_runs_close_to_float32_and_says_how_it_was_made(variant, prepared, tmp_path):
    settings = VARIANTS[variant]
    path = tmp_path / f"{variant}.int8.onnx"
    metadata = quantize_onnx(prepared.float_path, path, prepared.image_paths, settings=settings, prepared=prepared)
    assert metadata.quantization == read_metadata(str(path)).quantization
    described = metadata.quantization
    assert described["format"] == ("QOperator" if variant == "qoperator" else "QDQ")
    assert described["weights"].startswith("uint8" if variant == "u8u8" else "int8")
    assert ("7-bit" in described["weights"]) == (variant == "reduce_range")
    assert ("per tensor" in described["weights"]) == (variant == "per_tensor")
    assert described["depthwise"] == ("float32" if variant == "float_depthwise" else "int8")
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert ("QLinearConv" in ops) == (variant == "qoperator")
    batch = OnnxPredictor(prepared.float_path).preprocess([read_rgb(prepared.image_paths[0])])
    expected, found = OnnxPredictor(prepared.float_path).forward(batch), OnnxPredictor(str(path)).forward(batch)
    assert np.abs(found["scores"] - expected["scores"]).mean() < 0.03


def test_unknown_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="quant_format must be one of qdq, qoperator"):
        Int8Settings(quant_format="qlinear").check()
    with pytest.raises(ValueError, match="weights must be one of int8, uint8"):
        Int8Settings(weights="int4").check()


def test_pipeline_keeps_the_passs_layers_in_float32_and_prints_what_they_cost(tmp_path, capsys, monkeypatch):
    class_names = ["BACKGROUND", *(calibration_folder() / "labels.txt").read_text().split()]
    checkpoint, labels = tmp_path / "shapes.pth", tmp_path / "shapes-labels.txt"
    realistic_net("mb1-ssd-lite", len(class_names)).save(str(checkpoint))
    labels.write_text("".join(f"{name}\n" for name in class_names))
    kept = "/base_net.6/base_net.6.3/Conv"
    calls = []

    def stub_pass(prepared, settings, images, **options):  # the pass itself: tests/export/test_sensitivity.py
        calls.append((len(images), options))
        assert kept in prepared.conv_nodes
        return SensitivityResult(0.2, ((kept, 0.1),), (kept,), ((1, 0.1, None),), 3, 1.0)

    monkeypatch.setattr(pipeline, "find_float_layers", stub_pass)
    output = tmp_path / "model.onnx"
    code = convert_to_caffe2_models.main(["mb1-ssd-lite", str(checkpoint), str(labels), "--output", str(output),
                                          "--int8", "--calibration_data", str(calibration_folder()),
                                          "--calibration_images", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len(calls) == 1 and calls[0][1]["accept"] is None  # no validation set: the label-free rule
    lines = captured.out.splitlines()
    assert f"Kept in float32 by the sensitivity pass: {kept}" in lines
    assert any(line.startswith("The 1 float32 layer(s) cost") and "every layer in INT8 runs in" in line
               for line in lines)
    int8_path = str(tmp_path / "model.int8.onnx")
    assert read_metadata(int8_path).quantization["float_nodes"] == [kept]
    model = onnx.load(int8_path)
    producers = {out: node for node in model.graph.node for out in node.output}
    node = next(node for node in model.graph.node if node.name == kept)
    assert producers.get(node.input[1]) is None  # its weights stay a float32 initializer
    assert producers[node.input[0]].name.endswith("_float_input_DequantizeLinear")

"""The sensitivity pass of INT8 export (vision.export.sensitivity) finds a layer whose quantization is planted to
collapse and keeps it in float32.

The planted net is mb1-ssd-lite (3 classes, calibrated deterministic weights): channel 7 of the depthwise
output feeding block 5's pointwise convolution is made exactly zero (after its ReLU), and that pointwise
convolution gets a weight of 1000 on channel 7 in every output row. In float32 the weight multiplies zero
and changes nothing; quantized per output channel, its scale (1000 / 127) rounds every other weight of the
layer to zero. To stay fast the pass ranks six candidate convolutions (the pointwise ones of blocks 3 to 8),
not all of them.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch

from tests.export.nets import CLASS_NAMES, realistic_net
from vision.datasets.synthetic import generate_voc_dataset
from vision.export.onnx_export import export_onnx
from vision.export.onnx_predictor import OnnxPredictor
from vision.export.quantize import Int8Settings, PreparedModel, choose_calibration_images, read_rgb
from vision.export.sensitivity import DEFAULT_ERROR_GATE, find_float_layers, output_error

PLANTED_BLOCK, ZERO_CHANNEL = 5, 7


def planted_net():
    net = realistic_net("mb1-ssd-lite")
    with torch.no_grad():
        block = net.base_net[PLANTED_BLOCK]
        # The depthwise BatchNorm's output for the channel: about -10, so 0 after the ReLU. (Zero weights
        # there instead would make the depthwise layer's own quantization fail as well.)
        block[1].weight[ZERO_CHANNEL] = 1e-3
        block[1].bias[ZERO_CHANNEL] = -10.0
        block[3].weight[:, ZERO_CHANNEL] = 1000.0
    return net


def conv_named(model: onnx.ModelProto, block: int) -> str:
    """The exported Conv node of ``base_net.<block>.3`` (the pointwise convolution of a block)."""
    return next(node.name for node in model.graph.node
                if node.op_type == "Conv" and f"base_net.{block}.3" in node.name)


def test_sensitivity_pass_keeps_a_layer_whose_int8_collapses_in_float32(tmp_path):
    net = planted_net()
    float_path = tmp_path / "planted.onnx"
    export_onnx(net, "mb1-ssd-lite", CLASS_NAMES, float_path, dynamic_batch=True)
    generate_voc_dataset(tmp_path / "photos", num_images=8, num_test=0, seed=5)
    images = choose_calibration_images(tmp_path / "photos", 8)
    prepared = PreparedModel(float_path, images, tmp_path / "work")
    model = onnx.load(prepared.prepared_path)
    planted = conv_named(model, PLANTED_BLOCK)
    candidates = [conv_named(model, block) for block in range(3, 9)]
    search = [read_rgb(path) for path in images[:4]]

    result = find_float_layers(prepared, Int8Settings(), search, folder=str(tmp_path / "trials"),
                               candidates=candidates, error_gate=DEFAULT_ERROR_GATE)  # the label-free default

    assert result.keep_float == (planted,), result.ranking
    assert result.ranking[0][0] == planted
    # Quantized, the planted layer ruins the outputs; kept in float32 they are close to float32's again.
    final_error = result.steps[-1][1]
    assert final_error < 0.25 * result.baseline_error
    others = dict(result.ranking[1:])
    assert all(result.baseline_error - error < 0.1 * result.baseline_error for error in others.values())
    assert result.trials == len(candidates) + 2 and "kept 1 layer(s) in float32" in result.describe()


def test_output_error_is_zero_for_equal_outputs_and_grows_with_the_difference():
    scores = np.random.default_rng(0).dirichlet(np.ones(3), size=(1, 50)).astype(np.float32)
    boxes = np.random.default_rng(1).random((1, 50, 4), dtype=np.float32)
    reference = [{"scores": scores, "boxes": boxes}]
    assert output_error(reference, reference) == 0.0
    small = [{"scores": scores + 0.01, "boxes": boxes}]
    large = [{"scores": scores + 0.1, "boxes": boxes + 0.1}]
    assert 0 < output_error(reference, small) < output_error(reference, large)


def test_int8_settings_keep_the_named_nodes_in_float32(tmp_path):
    float_path = tmp_path / "net.onnx"
    export_onnx(realistic_net("mb1-ssd-lite"), "mb1-ssd-lite", CLASS_NAMES, float_path)
    generate_voc_dataset(tmp_path / "photos", num_images=4, num_test=0, seed=6)
    images = choose_calibration_images(tmp_path / "photos", 4)
    prepared = PreparedModel(float_path, images, tmp_path / "work")
    kept = conv_named(onnx.load(prepared.prepared_path), 4)
    settings = Int8Settings(keep_float=(kept,), float_depthwise=True)
    nodes = prepared.quantize(tmp_path / "int8.onnx", settings)
    assert kept not in nodes and not (nodes & prepared.depthwise_nodes) and not (nodes & prepared.head_nodes)
    assert len(prepared.depthwise_nodes) >= 13
    quantized = onnx.load(tmp_path / "int8.onnx")
    producers = {output: node for node in quantized.graph.node for output in node.output}
    kept_node = next(node for node in quantized.graph.node if node.name == kept)
    assert producers.get(kept_node.input[1]) is None or producers[kept_node.input[1]].op_type != "DequantizeLinear"
    assert OnnxPredictor(str(float_path)).size == (300, 300)
    # Without labels, a net whose INT8 moves the scores little is not ranked at all (one trial file).
    quiet = find_float_layers(prepared, Int8Settings(), [read_rgb(path) for path in images[:2]],
                              folder=str(tmp_path / "trials"), error_gate=DEFAULT_ERROR_GATE)
    assert quiet.keep_float == () and quiet.ranking == () and quiet.trials == 1
    assert quiet.baseline_error < DEFAULT_ERROR_GATE

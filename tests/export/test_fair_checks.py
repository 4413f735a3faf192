"""The export checks judge the graph, not the weights: untrained nets export, the postprocess graph picks
the predictor's candidates even among thousands of equal scores, and the one NMS difference left (the
original's 1e-5 in the IoU's union) is exactly what the ONNX-rule reference accounts for."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper

from tests.export.test_convert_cli import _convert
from vision.export.checks import output_difference
from vision.export.metadata import BOXES_NAME, LABELS_NAME, MAX_PER_CLASS_INPUT, PROB_THRESHOLD_INPUT, SCORES_NAME
from vision.export.onnx_nms_reference import onnx_rule_detections
from vision.export.postprocess import append_postprocess
from vision.ssd.predictor import Predictor
from vision.ssd.registry import create_net


def _postprocess_only(num_priors: int, num_classes: int, candidate_size: int, iou_threshold: float = 0.45):
    """A session of the appended postprocess alone: inputs all_scores (1, P, C) and all_boxes (1, P, 4)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["scores_in"], ["all_scores"]),
         helper.make_node("Identity", ["boxes_in"], ["all_boxes"])],
        "postprocess_only",
        [helper.make_tensor_value_info("scores_in", TensorProto.FLOAT, [1, num_priors, num_classes]),
         helper.make_tensor_value_info("boxes_in", TensorProto.FLOAT, [1, num_priors, 4])],
        [helper.make_tensor_value_info("all_scores", TensorProto.FLOAT, [1, num_priors, num_classes]),
         helper.make_tensor_value_info("all_boxes", TensorProto.FLOAT, [1, num_priors, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    append_postprocess(model, "all_scores", "all_boxes", num_classes, num_priors, iou_threshold, candidate_size, 0.01)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(scores: np.ndarray, boxes: np.ndarray, max_per_class: int = candidate_size) -> dict:
        outputs = session.run(None, {"scores_in": scores, "boxes_in": boxes,
                                     PROB_THRESHOLD_INPUT: np.array([0.01], np.float32),
                                     MAX_PER_CLASS_INPUT: np.array([max_per_class], np.int64)})
        return dict(zip([output.name for output in session.get_outputs()], outputs))
    return run


def _grid_boxes(count: int, size: float = 0.05) -> np.ndarray:
    """``count`` disjoint boxes (no NMS between them), corner form 0..1."""
    columns = int(np.ceil(np.sqrt(count)))
    index = np.arange(count)
    x1, y1 = (index % columns) / columns, (index // columns) / columns
    return np.stack([x1, y1, x1 + size / columns, y1 + size / columns], axis=1).astype(np.float32)[None]


def test_equal_scores_give_exactly_the_candidate_size_lowest_priors_in_order():
    num_priors, candidate_size = 300, 20
    scores = np.full((1, num_priors, 3), 0.3, dtype=np.float32)
    scores[0, :, 0] = 0.4
    scores[0, 250:, 1] = 0.2  # class 1: 250 priors tie at 0.3, then worse ones
    boxes = _grid_boxes(num_priors)
    found = _postprocess_only(num_priors, 3, candidate_size)(scores, boxes)
    for label in (1, 2):
        chosen = found[BOXES_NAME][found[LABELS_NAME] == label]
        np.testing.assert_array_equal(chosen, boxes[0, :candidate_size])  # priors 0..19, best first, lower index first
    predictor = Predictor(create_net("mb1-ssd", 3, is_test=True), 300, candidate_size=candidate_size)
    (expected_boxes, expected_labels, _), = predictor.postprocess(torch.from_numpy(scores), torch.from_numpy(boxes),
                                                                  [(1, 1)])
    assert found[LABELS_NAME].tolist() == expected_labels.tolist()
    np.testing.assert_array_equal(found[BOXES_NAME], expected_boxes.numpy())


def test_the_only_nms_difference_is_the_originals_epsilon_and_the_reference_follows_onnx():
    # Two 0.02-wide boxes at plain IoU 0.455 (> 0.45: ONNX drops one) but 0.447 with the original's 1e-5
    # in the union (<= 0.45: the predictor keeps both).
    overlap = 0.02 * 0.455 * 2 / (1 + 0.455)
    boxes = np.array([[[0.1, 0.1, 0.12, 0.12], [0.12 - overlap, 0.1, 0.14 - overlap, 0.12]]], dtype=np.float32)
    scores = np.array([[[0.1, 0.9], [0.2, 0.8]]], dtype=np.float32)
    found = _postprocess_only(2, 2, 200)(scores, boxes)
    assert found[LABELS_NAME].tolist() == [1]
    (labels, priors), = onnx_rule_detections(torch.from_numpy(scores), torch.from_numpy(boxes), 200, 0.01, 0.45, 200)
    assert labels.tolist() == [1] and priors.tolist() == [0]
    (labels, priors), = onnx_rule_detections(torch.from_numpy(scores), torch.from_numpy(boxes), 200, 0.01, 0.45, 200,
                                             eps=1e-5)
    predictor = Predictor(create_net("mb1-ssd", 2, is_test=True), 300)
    (_, expected_labels, _), = predictor.postprocess(torch.from_numpy(scores), torch.from_numpy(boxes), [(1, 1)])
    assert expected_labels.tolist() == labels.tolist() == [1, 1]


def test_reference_keeps_at_most_max_per_class_and_none_for_zero():
    scores = np.full((1, 50, 2), 0.5, dtype=np.float32)
    boxes = _grid_boxes(50)
    run = _postprocess_only(50, 2, 30)
    for max_per_class in (5, 0):
        found = run(scores, boxes, max_per_class)
        (labels, priors), = onnx_rule_detections(torch.from_numpy(scores), torch.from_numpy(boxes), 30, 0.01, 0.45,
                                                 max_per_class)
        assert len(found[LABELS_NAME]) == len(labels) == max_per_class
        np.testing.assert_array_equal(found[BOXES_NAME], boxes[0, priors.numpy()])
        np.testing.assert_array_equal(found[SCORES_NAME], scores[0, priors.numpy(), 1])


def test_huge_untrained_boxes_are_held_to_float32_not_to_their_size():
    raw = np.array([27.0, 0.1, 27.0, 0.1], dtype=np.float32)  # log-sizes of an untrained vgg16-ssd box
    expected = np.exp(raw.astype(np.float64)).astype(np.float32)[None, None]  # ~5e11
    rounded = np.exp((raw + np.float32(5e-4) * np.array([1, 0, 1, 0], np.float32))
                     .astype(np.float64)).astype(np.float32)[None, None]
    absolute, scaled = output_difference(rounded, expected, boxes=True)
    assert absolute > 1e8 and scaled < 1e-3  # 5e-4 rounding of a raw value of 27 passes a 1e-3 limit
    inside = np.array([[[0.2, 0.2, 0.5, 0.5]]], dtype=np.float32)
    # absolute in the image
    assert output_difference(inside + 2e-4, inside, boxes=True)[1] == pytest.approx(2e-4, rel=1e-3)


@pytest.mark.parametrize("net_type", ["sq-ssd-lite"])
def test_untrained_weights_export_with_postprocess(net_type, tmp_path, capsys):
    torch.manual_seed(0)
    model = tmp_path / "fresh.pth"
    torch.save(create_net(net_type, 21).state_dict(), model)  # untrained: thousands of equal scores per class
    labels = tmp_path / "labels.txt"
    labels.write_text("BACKGROUND\n" + "".join(f"class{i}\n" for i in range(1, 21)))
    output = tmp_path / "fresh.onnx"
    code, out, err = _convert([net_type, str(model), str(labels), "--output", str(output), "--with_postprocess"],
                              capsys)
    assert code == 0, err
    assert "ONNX Runtime postprocess: ok" in out and output.is_file()

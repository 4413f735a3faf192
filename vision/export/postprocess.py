"""Appending SSD postprocessing (per-class selection and NMS) to an exported ONNX graph. No torch import.

The appended part follows the PyTorch predictor's rule, per image and per class except the background:
the ``candidate_size`` best scores (equal scores: the lower prior index first, as the predictor's stable
ranking), then those strictly above ``prob_threshold``, then greedy NMS in that rank order (ONNX
``NonMaxSuppression`` is given each candidate's rank as its score, so its unspecified order of equal
scores never matters), then at most ``max_per_class`` kept, best first. ``prob_threshold`` and
``max_per_class`` are graph inputs with defaults (initializers of the same name), so callers may leave
them out.

The one difference from the predictor, which ONNX cannot express: ``NonMaxSuppression`` drops a box when
its plain IoU ``overlap / (area1 + area2 - overlap)`` with a kept box is above ``iou_threshold``; the
predictor uses the original toolkit's IoU, with ``1e-5`` added to the union (``vision.utils.nms``), which
is slightly lower for small boxes. So a box whose two IoUs straddle the threshold is dropped here and kept
there. ``vision.export.checks.check_postprocess`` therefore checks the graph against a reference that
follows ONNX's rule (docs/deploy.md).

Only opset-11 operators are used (Slice, Transpose, TopK, Greater, Where, Shape, ConstantOfShape,
ScatterElements, NonMaxSuppression, Gather, GatherND, Add, Clip), so the graph runs in any ONNX Runtime from
opset 11 on.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vision.export.metadata import (
    BATCH_INDEX_NAME,
    BOXES_NAME,
    LABELS_NAME,
    MAX_PER_CLASS_INPUT,
    PROB_THRESHOLD_INPUT,
    SCORES_NAME,
)

MIN_OPSET = 11
# The NMS score of a prior that is not a candidate: below the rank threshold 0, so never kept.
_DROPPED_SCORE = -1.0


def append_postprocess(model: onnx.ModelProto, all_scores: str, all_boxes: str, num_classes: int, num_priors: int,
                       iou_threshold: float, candidate_size: int, default_prob_threshold: float) -> onnx.ModelProto:
    """Replace the outputs of ``model`` (named ``all_scores`` ``(N, P, C)`` softmaxed and ``all_boxes``
    ``(N, P, 4)`` corner form 0..1) by the detections:

    - ``boxes`` float32 ``(M, 4)`` corner form 0..1 (clipped to the image), ``scores`` float32 ``(M,)``,
      ``labels`` int64 ``(M,)`` (1..C-1), ``batch_index`` int64 ``(M,)`` (which input image);
      ordered by image, then class, then score (best first), as ONNX Runtime emits them.

    New optional inputs: ``prob_threshold`` float32 ``(1,)`` (default ``default_prob_threshold``) and
    ``max_per_class`` int64 ``(1,)`` (default ``candidate_size``; 0 gives no detections). Returns ``model``,
    changed in place.
    """
    opset = _default_domain_opset(model)
    if opset < MIN_OPSET:
        raise ValueError(f"the postprocess graph needs opset {MIN_OPSET} or newer, the model has {opset}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (background and one class), got {num_classes}")
    graph = model.graph
    output_names = {output.name for output in graph.output}
    if output_names != {all_scores, all_boxes}:
        raise ValueError(f"expected the outputs {all_scores!r} and {all_boxes!r}, the model has {sorted(output_names)}")

    def const(name: str, values, dtype) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name=f"postprocess/{name}"))
        return f"postprocess/{name}"

    def node(op: str, inputs, output: str, **attributes) -> str:
        name = f"postprocess/{output}"
        graph.node.append(helper.make_node(op, list(inputs), [name], name=name, **attributes))
        return name

    # (N, P, C) -> (N, C-1, P): NonMaxSuppression wants scores class-major; the background is never detected.
    class_scores = node("Slice", [all_scores, const("slice_start", [1], np.int64),
                                  const("slice_end", [num_classes], np.int64), const("slice_axis", [2], np.int64)],
                        "class_scores")
    class_scores = node("Transpose", [class_scores], "class_scores_by_class", perm=[0, 2, 1])

    # Each class's candidate_size best, exactly as the predictor picks them: TopK orders equal scores by
    # the lower prior index, and NonMaxSuppression then sees not the scores but each candidate's rank
    # (candidate_size for the best, down to 1), so it visits them in that same order. Its own order of
    # equal scores is unspecified, and an untrained net gives thousands of equal scores per class.
    num_candidates = min(candidate_size, num_priors)
    best = helper.make_node("TopK", [class_scores, const("k", [num_candidates], np.int64)],
                            ["postprocess/best_scores", "postprocess/best_priors"], name="postprocess/best",
                            axis=-1, largest=1, sorted=1)
    graph.node.append(best)

    graph.initializer.append(numpy_helper.from_array(np.array([default_prob_threshold], dtype=np.float32),
                                                     PROB_THRESHOLD_INPUT))
    graph.initializer.append(numpy_helper.from_array(np.array([candidate_size], dtype=np.int64), MAX_PER_CLASS_INPUT))
    graph.input.append(helper.make_tensor_value_info(PROB_THRESHOLD_INPUT, TensorProto.FLOAT, [1]))
    graph.input.append(helper.make_tensor_value_info(MAX_PER_CLASS_INPUT, TensorProto.INT64, [1]))

    # Scores strictly above prob_threshold stay candidates (the predictor's rule), with their rank as score.
    above = node("Greater", ["postprocess/best_scores", PROB_THRESHOLD_INPUT], "above_threshold")
    ranks = const("ranks", np.arange(num_candidates, 0, -1, dtype=np.float32), np.float32)
    ranked = node("Where", [above, ranks, const("dropped_score", _DROPPED_SCORE, np.float32)], "ranked_best")
    shape = node("Shape", [class_scores], "class_scores_shape")
    graph.node.append(helper.make_node("ConstantOfShape", [shape], ["postprocess/all_dropped"],
                                       name="postprocess/all_dropped",
                                       value=numpy_helper.from_array(np.array([_DROPPED_SCORE], dtype=np.float32))))
    candidates = node("ScatterElements", ["postprocess/all_dropped", "postprocess/best_priors", ranked],
                      "candidate_ranks", axis=2)

    # center_point_box=0 takes any diagonal corner pair; IoU does not depend on x/y order, so [x1, y1, x2, y2] works.
    selected = node("NonMaxSuppression", [all_boxes, candidates, MAX_PER_CLASS_INPUT,
                                          const("iou_threshold", [iou_threshold], np.float32),
                                          const("rank_threshold", [0.0], np.float32)],
                    "selected", center_point_box=0)  # (M, 3): image, class - 1, prior

    graph.node.append(helper.make_node("Gather", [selected, const("column_image", 0, np.int64)], [BATCH_INDEX_NAME],
                                       name=f"postprocess/{BATCH_INDEX_NAME}", axis=1))
    class_index = node("Gather", [selected, const("column_class", 1, np.int64)], "class_index", axis=1)
    graph.node.append(helper.make_node("Add", [class_index, const("one", 1, np.int64)], [LABELS_NAME],
                                       name=f"postprocess/{LABELS_NAME}"))
    image_and_prior = node("Gather", [selected, const("columns_image_prior", [0, 2], np.int64)], "image_and_prior",
                           axis=1)
    selected_boxes = node("GatherND", [all_boxes, image_and_prior], "selected_boxes")
    # Clipped to the image after NMS, as the PyTorch predictor does, so the selection is unchanged.
    graph.node.append(helper.make_node("Clip", [selected_boxes, const("box_min", 0.0, np.float32),
                                                const("box_max", 1.0, np.float32)], [BOXES_NAME],
                                       name=f"postprocess/{BOXES_NAME}"))
    graph.node.append(helper.make_node("GatherND", [class_scores, selected], [SCORES_NAME],
                                       name=f"postprocess/{SCORES_NAME}"))

    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(BOXES_NAME, TensorProto.FLOAT, ["num_detections", 4]),
        helper.make_tensor_value_info(SCORES_NAME, TensorProto.FLOAT, ["num_detections"]),
        helper.make_tensor_value_info(LABELS_NAME, TensorProto.INT64, ["num_detections"]),
        helper.make_tensor_value_info(BATCH_INDEX_NAME, TensorProto.INT64, ["num_detections"]),
    ])
    onnx.checker.check_model(model)
    return model


def _default_domain_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise ValueError("the model imports no default-domain (ai.onnx) opset")

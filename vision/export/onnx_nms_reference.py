"""The detections that the ``--with_postprocess`` graph must give for given scores and boxes, by ONNX's rule.

The graph (``vision.export.postprocess``) ranks each class's scores best first, equal scores by the
lower prior index, keeps the ``candidate_size`` best that are strictly above ``prob_threshold``, and runs
ONNX ``NonMaxSuppression`` in that order: a box is dropped when its plain IoU
``overlap / (area1 + area2 - overlap)`` with a kept box of its class is above ``iou_threshold``, and at
most ``max_per_class`` are kept. This module computes the same, batched in torch, so that the check of
an exported file compares the graph with its own rule on its own inputs: a difference is then a graph
error, never float noise in the weights nor the PyTorch predictor's other IoU (which adds the original's
``1e-5`` to the union).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

from vision.utils.nms import padded_hard_nms_original

ONNX_IOU_EPS = 0.0  # ONNX NonMaxSuppression's IoU has nothing added to the union


@torch.no_grad()
def onnx_rule_detections(scores: Tensor, boxes: Tensor, candidate_size: int, prob_threshold: float,
                         iou_threshold: float, max_per_class: int, eps: float = ONNX_IOU_EPS
                         ) -> List[Tuple[Tensor, Tensor]]:
    """Per image, the selected ``(labels int64 (K,), prior indexes int64 (K,))`` ordered by class, then
    best first, as the graph emits them.

    scores: ``(N, P, C)`` softmaxed (class 0 the background, never selected); boxes: ``(N, P, 4)`` corner
    form 0..1. ``max_per_class`` <= 0 keeps none (ONNX's rule for 0). ``eps``: added to the IoU's union (ONNX: 0;
    the original toolkit's 1e-5 gives the PyTorch predictor's hard NMS)."""
    num_images, num_priors, num_classes = scores.shape
    if max_per_class <= 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return [(empty, empty) for _ in range(num_images)]
    by_class = scores[:, :, 1:].transpose(1, 2)  # (N, C-1, P)
    ranked_scores, ranked_priors = by_class.sort(dim=-1, descending=True, stable=True)
    count = min(candidate_size, num_priors)
    ranked_scores, ranked_priors = ranked_scores[..., :count], ranked_priors[..., :count]
    valid = ranked_scores > torch.tensor(prob_threshold, dtype=scores.dtype)
    image_index, class_index = valid[..., 0].nonzero(as_tuple=True)
    row_priors, row_valid = ranked_priors[image_index, class_index], valid[image_index, class_index]
    row_boxes = boxes[image_index[:, None], row_priors]  # (R, count, 4)
    keep = padded_hard_nms_original(row_boxes, row_valid, iou_threshold, eps=eps)
    keep &= keep.cumsum(dim=1) <= max_per_class
    row_of, rank = keep.nonzero(as_tuple=True)  # row-major: image, class, rank
    images, labels, priors = image_index[row_of], class_index[row_of] + 1, row_priors[row_of, rank]
    counts = torch.bincount(images, minlength=num_images).tolist()
    return list(zip(labels.split(counts), priors.split(counts)))

"""A direct transcription of the original toolkit's hard NMS (qfgaohao/pytorch-ssd, vision/utils/box_utils.py
``area_of`` / ``iou_of`` / ``hard_nms`` and the per-class loop of vision/ssd/predictor.py), one class and one
box at a time, independent of this project's code. The tests compare the batched NMS with it.

One deliberate choice: the original ranks with ``scores.sort(descending=True)``, which is not stable, so
the order of exactly equal scores is unspecified there; here it is stable (input order), the order the
project documents.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor


def original_area_of(left_top: Tensor, right_bottom: Tensor) -> Tensor:
    hw = torch.clamp(right_bottom - left_top, min=0.0)
    return hw[..., 0] * hw[..., 1]


def original_iou_of(boxes0: Tensor, boxes1: Tensor, eps: float = 1e-5) -> Tensor:
    overlap_left_top = torch.max(boxes0[..., :2], boxes1[..., :2])
    overlap_right_bottom = torch.min(boxes0[..., 2:], boxes1[..., 2:])
    overlap_area = original_area_of(overlap_left_top, overlap_right_bottom)
    area0 = original_area_of(boxes0[..., :2], boxes0[..., 2:])
    area1 = original_area_of(boxes1[..., :2], boxes1[..., 2:])
    return overlap_area / (area0 + area1 - overlap_area + eps)


def original_hard_nms(box_scores: Tensor, iou_threshold: float, top_k: int = -1,
                      candidate_size: int = 200) -> List[int]:
    """Row indexes of ``box_scores (n, 5)`` that the original keeps, in the order it picks them."""
    scores = box_scores[:, -1]
    boxes = box_scores[:, :-1]
    picked = []
    _, indexes = scores.sort(descending=True, stable=True)
    indexes = indexes[:candidate_size]
    while len(indexes) > 0:
        current = indexes[0]
        picked.append(current.item())
        if 0 < top_k == len(picked) or len(indexes) == 1:
            break
        current_box = boxes[current, :]
        indexes = indexes[1:]
        rest_boxes = boxes[indexes, :]
        iou = original_iou_of(rest_boxes, current_box.unsqueeze(0))
        indexes = indexes[iou <= iou_threshold]
    return picked


def original_postprocess(scores: Tensor, boxes: Tensor, width: int, height: int, prob_threshold: float,
                         iou_threshold: float, top_k: int = -1,
                         candidate_size: int = 200) -> Tuple[Tensor, Tensor, Tensor]:
    """The original ``Predictor.predict`` after the forward pass, for one image: scores ``(P, C)``, boxes
    ``(P, 4)`` corner 0..1. Returns ``(boxes (K, 4) pixels, labels (K,), probs (K,))``."""
    picked_box_probs, picked_labels = [], []
    for class_index in range(1, scores.size(1)):
        probs = scores[:, class_index]
        mask = probs > prob_threshold
        probs = probs[mask]
        if probs.size(0) == 0:
            continue
        subset_boxes = boxes[mask, :]
        box_probs = torch.cat([subset_boxes, probs.reshape(-1, 1)], dim=1)
        box_probs = box_probs[original_hard_nms(box_probs, iou_threshold, top_k, candidate_size)]
        picked_box_probs.append(box_probs)
        picked_labels.extend([class_index] * box_probs.size(0))
    if not picked_box_probs:
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    picked_box_probs = torch.cat(picked_box_probs)
    picked_box_probs[:, 0] *= width
    picked_box_probs[:, 1] *= height
    picked_box_probs[:, 2] *= width
    picked_box_probs[:, 3] *= height
    return picked_box_probs[:, :4], torch.tensor(picked_labels), picked_box_probs[:, 4]

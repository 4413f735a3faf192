"""Box-form conversions, SSD box coding, IoU, ground-truth matching and NMS (prior boxes: the original's
names are kept here and resolve to :mod:`vision.ssd.priors`).

Conventions used throughout:
- corner form: ``[x1, y1, x2, y2]``; center form: ``[cx, cy, w, h]``;
- priors and network boxes are relative to the image (0..1); the predictor scales them to pixels.

The names and call shapes are those of the original pytorch-ssd ``vision.utils.box_utils``, which
users' scripts import.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from vision.utils.nms import ORIGINAL_IOU_EPS, batched_hard_nms_original

_PRIOR_NAMES = ("SSDBoxSizes", "SSDSpec", "generate_ssd_priors")


def __getattr__(name: str):
    """The original's prior names (``SSDBoxSizes``, ``SSDSpec``, ``generate_ssd_priors``), which live in
    :mod:`vision.ssd.priors` with every other prior rule; imported on first use, so this lowest layer does
    not load the net package."""
    if name in _PRIOR_NAMES:
        from vision.ssd import priors

        return getattr(priors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def convert_locations_to_boxes(locations: Tensor, priors: Tensor, center_variance: float,
                               size_variance: float) -> Tensor:
    """Decode regression outputs.

    locations: ``(..., P, 4)`` offsets from the heads; priors: ``(P, 4)`` or ``(..., P, 4)`` center form, 0..1.
    Returns ``(..., P, 4)`` center-form boxes, 0..1.
    """
    if priors.dim() + 1 == locations.dim():
        priors = priors.unsqueeze(0)
    return torch.cat(
        [
            locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2],
            torch.exp(locations[..., 2:] * size_variance) * priors[..., 2:],
        ],
        dim=locations.dim() - 1,
    )


def convert_boxes_to_locations(
    center_form_boxes: Tensor, center_form_priors: Tensor, center_variance: float, size_variance: float
) -> Tensor:
    """Encode center-form boxes ``(..., P, 4)`` against center-form priors ``(P, 4)``: the inverse of
    :func:`convert_locations_to_boxes`."""
    if center_form_priors.dim() + 1 == center_form_boxes.dim():
        center_form_priors = center_form_priors.unsqueeze(0)
    return torch.cat(
        [
            (center_form_boxes[..., :2] - center_form_priors[..., :2]) / center_form_priors[..., 2:] / center_variance,
            torch.log(center_form_boxes[..., 2:] / center_form_priors[..., 2:]) / size_variance,
        ],
        dim=center_form_boxes.dim() - 1,
    )


def center_form_to_corner_form(locations: Tensor) -> Tensor:
    """``(..., 4)`` center form -> corner form."""
    return torch.cat(
        [locations[..., :2] - locations[..., 2:] / 2, locations[..., :2] + locations[..., 2:] / 2], locations.dim() - 1
    )


def corner_form_to_center_form(boxes: Tensor) -> Tensor:
    """``(..., 4)`` corner form -> center form."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], boxes.dim() - 1)


def area_of(left_top: Tensor, right_bottom: Tensor) -> Tensor:
    """Area of boxes given their ``(..., 2)`` corners; 0 for empty boxes."""
    hw = torch.clamp(right_bottom - left_top, min=0.0)
    return hw[..., 0] * hw[..., 1]


def iou_of(boxes0: Tensor, boxes1: Tensor, eps: float = 1e-5) -> Tensor:
    """IoU of corner-form boxes, broadcasting over leading dims: ``(..., 4)`` x ``(..., 4)`` -> ``(...)``.

    Hand-written rather than ``torchvision.ops.box_iou`` because matching must reproduce the original
    exactly, and the original adds ``eps`` to the union (it decides ties at the 0.5 threshold).
    """
    overlap_left_top = torch.max(boxes0[..., :2], boxes1[..., :2])
    overlap_right_bottom = torch.min(boxes0[..., 2:], boxes1[..., 2:])
    overlap_area = area_of(overlap_left_top, overlap_right_bottom)
    area0 = area_of(boxes0[..., :2], boxes0[..., 2:])
    area1 = area_of(boxes1[..., :2], boxes1[..., 2:])
    return overlap_area / (area0 + area1 - overlap_area + eps)


def assign_priors(gt_boxes: Tensor, gt_labels: Tensor, corner_form_priors: Tensor, iou_threshold: float):
    """Match ground truth to priors, as the original does.

    gt_boxes: ``(n, 4)`` corner form 0..1; gt_labels: ``(n,)`` int64; corner_form_priors: ``(P, 4)``.
    Every ground-truth box takes its best prior (where two boxes share one, the later box wins); every
    other prior takes its best ground truth and is background (label 0) where that IoU is below
    ``iou_threshold``. Returns ``(boxes (P, 4) corner form, labels (P,) int64)``. With no ground
    truth, every prior is background and its box is the prior itself (so encoding gives zeros).
    """
    num_priors = corner_form_priors.size(0)
    if gt_boxes.numel() == 0:
        return corner_form_priors.clone(), torch.zeros(num_priors, dtype=torch.int64, device=corner_form_priors.device)
    ious = iou_of(gt_boxes.unsqueeze(0), corner_form_priors.unsqueeze(1))  # (P, n)
    best_target_per_prior, best_target_per_prior_index = ious.max(1)
    _, best_prior_per_target_index = ious.max(0)
    # The original loops over targets in order, so a later target overwrites an earlier one on a shared
    # prior; scatter with "amax" over target indices gives the same winner deterministically.
    target_indexes = torch.arange(gt_boxes.size(0), device=gt_boxes.device)
    winner = torch.full((num_priors,), -1, dtype=torch.int64, device=gt_boxes.device)
    winner.scatter_reduce_(0, best_prior_per_target_index, target_indexes, reduce="amax")
    forced = winner >= 0
    best_target_per_prior_index = torch.where(forced, winner, best_target_per_prior_index)
    # 2.0 makes sure every target keeps the prior forced onto it.
    best_target_per_prior = best_target_per_prior.masked_fill(forced, 2.0)
    labels = gt_labels[best_target_per_prior_index].clone()
    labels[best_target_per_prior < iou_threshold] = 0
    boxes = gt_boxes[best_target_per_prior_index]
    return boxes, labels


def hard_negative_mining(loss: Tensor, labels: Tensor, neg_pos_ratio: int, min_negatives: int = 0) -> Tensor:
    """Positives plus, per image, the highest-loss negatives.

    loss: ``(N, P)`` background loss per prior; labels: ``(N, P)``. Each image keeps
    ``max(neg_pos_ratio * its positives, min_negatives)`` negatives (``min_negatives`` 0 is the
    original's rule: an image without objects contributes nothing). Returns a bool mask ``(N, P)``.
    """
    pos_mask = labels > 0
    num_pos = pos_mask.long().sum(dim=1, keepdim=True)
    num_neg = torch.clamp(num_pos * neg_pos_ratio, min=min_negatives)
    loss = loss.masked_fill(pos_mask, -math.inf)
    _, indexes = loss.sort(dim=1, descending=True)
    _, orders = indexes.sort(dim=1)
    neg_mask = orders < num_neg
    return pos_mask | neg_mask


def hard_nms(box_scores: Tensor, iou_threshold: float, top_k: int = -1, candidate_size: int = 200) -> Tensor:
    """Hard NMS of one class, as the original decides it. box_scores: ``(n, 5)`` corner boxes (0..1) +
    score. Returns the kept rows, best first: at most ``candidate_size`` candidates are considered and
    ``top_k`` kept (all when <= 0); a box goes when its IoU (the original's, see ``iou_of``) with a kept
    better box is above ``iou_threshold``. Equal scores keep their input order."""
    if box_scores.numel() == 0:
        return box_scores.reshape(0, 5)
    scores = box_scores[:, -1]
    groups = torch.zeros(scores.shape, dtype=torch.int64, device=scores.device)
    keep = batched_hard_nms_original(box_scores[:, :4], scores, groups, iou_threshold, ORIGINAL_IOU_EPS, candidate_size)
    if top_k > 0:
        keep = keep[:top_k]
    return box_scores[keep]


def soft_nms(box_scores: Tensor, score_threshold: float, sigma: float = 0.5, top_k: int = -1) -> Tensor:
    """Gaussian soft-NMS of one class (Bodla et al. 2017). box_scores: ``(n, 5)``. Returns ``(k, 5)``
    with decayed scores, in the order picked."""
    groups = torch.zeros(box_scores.size(0), dtype=torch.int64, device=box_scores.device)
    kept_boxes, kept_scores, _ = batched_soft_nms(box_scores[:, :4], box_scores[:, 4], groups, score_threshold, sigma,
                                                  top_k)
    return torch.cat([kept_boxes, kept_scores[:, None]], dim=1)


def batched_soft_nms(
    boxes: Tensor, scores: Tensor, groups: Tensor, score_threshold: float, sigma: float = 0.5, top_k: int = -1
):
    """Gaussian soft-NMS run independently in each group, all groups at once.

    boxes ``(n, 4)`` corner form; scores ``(n,)``; groups ``(n,)`` int64 (e.g. image * classes + class).
    Each step picks, in every group, the highest remaining score, decays the others in the group by
    ``exp(-iou^2 / sigma)`` and drops those at or below ``score_threshold``; the loop runs once per pick
    (inherently sequential), vectorised over groups. Returns ``(boxes (k, 4), scores (k,), groups (k,))``
    sorted by group, then in the order picked.
    """
    if scores.numel() == 0:
        return boxes.reshape(0, 4), scores.reshape(0), groups.reshape(0)
    unique_groups, group_of = torch.unique(groups, return_inverse=True)
    num_groups = unique_groups.numel()
    order = torch.argsort(group_of, stable=True)
    counts = torch.bincount(group_of, minlength=num_groups)
    width = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(order.numel(), device=scores.device) - starts[group_of[order]]
    padded_scores = torch.full((num_groups, width), -math.inf, dtype=scores.dtype, device=scores.device)
    padded_boxes = torch.zeros((num_groups, width, 4), dtype=boxes.dtype, device=boxes.device)
    padded_scores[group_of[order], slot] = scores[order]
    padded_boxes[group_of[order], slot] = boxes[order]
    group_rows = torch.arange(num_groups, device=scores.device)
    picked_boxes, picked_scores, picked_groups = [], [], []
    max_picks = width if top_k <= 0 else min(width, top_k)
    for _ in range(max_picks):
        best_score, best_slot = padded_scores.max(dim=1)
        alive = best_score > -math.inf
        if not bool(alive.any()):
            break
        best_box = padded_boxes[group_rows, best_slot]  # (G, 4)
        picked_boxes.append(best_box[alive])
        picked_scores.append(best_score[alive])
        picked_groups.append(unique_groups[alive])
        padded_scores[group_rows, best_slot] = -math.inf
        ious = iou_of(best_box[:, None, :], padded_boxes)  # (G, W)
        padded_scores = padded_scores * torch.exp(-(ious * ious) / sigma)
        padded_scores = padded_scores.masked_fill(padded_scores <= score_threshold, -math.inf)
    if not picked_scores:
        return boxes.reshape(0, 4), scores.reshape(0), groups.reshape(0)
    out_boxes, out_scores, out_groups = torch.cat(picked_boxes), torch.cat(picked_scores), torch.cat(picked_groups)
    by_group = torch.argsort(out_groups, stable=True)
    return out_boxes[by_group], out_scores[by_group], out_groups[by_group]


def nms(
    box_scores: Tensor,
    nms_method: Optional[str] = None,
    score_threshold: Optional[float] = None,
    iou_threshold: Optional[float] = None,
    sigma: float = 0.5,
    top_k: int = -1,
    candidate_size: int = 200,
) -> Tensor:
    """NMS of one class, dispatching on ``nms_method`` ("soft" or hard), as the original's ``nms``."""
    if nms_method == "soft":
        return soft_nms(box_scores, score_threshold, sigma, top_k)
    return hard_nms(box_scores, iou_threshold, top_k, candidate_size=candidate_size)

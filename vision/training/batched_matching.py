"""Prior matching (``MatchPrior``) for a whole batch at once, on the batch's device.

The per-image rule is ``vision.utils.box_utils.assign_priors``; this module computes the same result for
``B`` images in one pass over padded ground truth, with the same float operations, so the targets are
equal bit for bit (including which box wins a prior that is the best of two boxes: the later one).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from vision.utils import box_utils


def pad_ground_truth(boxes: Sequence, labels: Sequence, device=None) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-image ground truth -> padded tensors.

    boxes: B arrays/tensors (n_i, 4) corner form (any unit); labels: B arrays/tensors (n_i,).
    Returns ``(boxes float32 (B, M, 4), labels int64 (B, M), mask bool (B, M))`` with M = max n_i (at least
    1 so that shapes stay non-empty); padded slots are zero and False in ``mask``.
    """
    count = len(boxes)
    sizes = [int(len(b)) for b in boxes]
    width = max(sizes + [1])
    padded_boxes = np.zeros((count, width, 4), dtype=np.float32)
    padded_labels = np.zeros((count, width), dtype=np.int64)
    for index, (image_boxes, image_labels, size) in enumerate(zip(boxes, labels, sizes)):
        if size:
            padded_boxes[index, :size] = np.asarray(image_boxes, dtype=np.float32).reshape(size, 4)
            padded_labels[index, :size] = np.asarray(image_labels, dtype=np.int64).reshape(size)
    mask = np.arange(width)[None, :] < np.asarray(sizes, dtype=np.int64)[:, None]
    return (torch.from_numpy(padded_boxes).to(device), torch.from_numpy(padded_labels).to(device),
            torch.from_numpy(mask).to(device))


def assign_priors_batched(gt_boxes: Tensor, gt_labels: Tensor, gt_mask: Tensor, corner_form_priors: Tensor,
                          iou_threshold: float) -> Tuple[Tensor, Tensor]:
    """``assign_priors`` for a batch.

    gt_boxes: float32 (B, M, 4) corner form 0..1; gt_labels: int64 (B, M); gt_mask: bool (B, M), False for
    padding; corner_form_priors: (P, 4). Returns ``(boxes (B, P, 4) corner form, labels (B, P) int64)``:
    every real box takes its best prior (the later box wins a shared one), every other prior its best box,
    background (0) below ``iou_threshold``; an image without boxes gets the priors themselves and label 0.
    """
    batch, width = gt_mask.shape
    num_priors = corner_form_priors.shape[0]
    device = corner_form_priors.device
    # (B, P, M), laid out as the per-image (P, n) so that max() sees the same values in the same order.
    ious = box_utils.iou_of(gt_boxes.unsqueeze(1), corner_form_priors.view(1, num_priors, 1, 4))
    ious = ious.masked_fill(~gt_mask.unsqueeze(1), -1.0)
    best_target_per_prior, best_target_per_prior_index = ious.max(2)  # (B, P)
    _, best_prior_per_target_index = ious.max(1)  # (B, M); first maximum, as torch.max documents
    # Forcing: a scatter with "amax" over target indices picks the later target on a shared prior;
    # padded targets scatter -1, which never beats the initial -1.
    target_indexes = torch.arange(width, device=device).expand(batch, width)
    target_indexes = torch.where(gt_mask, target_indexes, torch.full_like(target_indexes, -1))
    winner = torch.full((batch, num_priors), -1, dtype=torch.int64, device=device)
    winner.scatter_reduce_(1, best_prior_per_target_index, target_indexes, reduce="amax")
    forced = winner >= 0
    best_target_per_prior_index = torch.where(forced, winner, best_target_per_prior_index)
    best_target_per_prior = best_target_per_prior.masked_fill(forced, 2.0)
    labels = torch.gather(gt_labels, 1, best_target_per_prior_index)
    labels = labels.masked_fill(best_target_per_prior < iou_threshold, 0)
    boxes = torch.gather(gt_boxes, 1, best_target_per_prior_index.unsqueeze(2).expand(batch, num_priors, 4))
    has_boxes = gt_mask.any(dim=1)
    boxes = torch.where(has_boxes.view(batch, 1, 1), boxes, corner_form_priors.unsqueeze(0))
    return boxes, labels


class BatchedMatchPrior:
    """Batched ``MatchPrior``: padded ground truth of B images -> regression targets and labels of every prior.

    Built from a net's configuration (``net.config``: priors, variances, match IoU threshold).
    ``__call__(gt_boxes (B, M, 4) corner form 0..1, gt_labels (B, M), gt_mask (B, M))`` on any device
    returns ``(locations float32 (B, P, 4), labels int64 (B, P))``, equal to stacking ``MatchPrior`` per image.
    """

    def __init__(self, center_form_priors: Tensor, center_variance: float, size_variance: float,
                 iou_threshold: float):
        self.center_form_priors = center_form_priors
        self.corner_form_priors = box_utils.center_form_to_corner_form(center_form_priors)
        self.center_variance = center_variance
        self.size_variance = size_variance
        self.iou_threshold = iou_threshold

    @classmethod
    def from_config(cls, config, device=None) -> "BatchedMatchPrior":
        return cls(config.priors.to(device), config.center_variance, config.size_variance, config.match_iou_threshold)

    def to(self, device) -> "BatchedMatchPrior":
        return BatchedMatchPrior(self.center_form_priors.to(device), self.center_variance, self.size_variance,
                                 self.iou_threshold)

    def __call__(self, gt_boxes: Tensor, gt_labels: Tensor, gt_mask: Tensor) -> Tuple[Tensor, Tensor]:
        device = self.center_form_priors.device
        boxes, labels = assign_priors_batched(gt_boxes.to(device, torch.float32), gt_labels.to(device, torch.int64),
                                              gt_mask.to(device), self.corner_form_priors, self.iou_threshold)
        center_form = box_utils.corner_form_to_center_form(boxes)
        locations = box_utils.convert_boxes_to_locations(center_form, self.center_form_priors, self.center_variance,
                                                         self.size_variance)
        return locations, labels

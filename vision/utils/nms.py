"""Hard NMS decided exactly as the original toolkit decides it, batched over all groups at once.

The original (``vision/utils/box_utils.py`` of qfgaohao/pytorch-ssd) loops over one class at a time:
it sorts the scores best first, keeps the ``candidate_size`` best, then repeatedly keeps the best
remaining box and drops every remaining box whose IoU with it is above ``iou_threshold``. Its IoU is
``overlap / (area0 + area1 - overlap + eps)`` with ``eps = 1e-5`` in 0..1 box units, so for small
boxes it is visibly lower than the epsilon-free IoU of ``torchvision.ops.nms`` (two 0.02-wide boxes at
torchvision IoU 0.455 have the original's IoU 0.447: the original keeps both, torchvision drops one).

Hand-written because no library NMS takes an epsilon in the union. The greedy rule is resolved as a
fixed point on the full pairwise matrix of each group (a few batched tensor ops per step, no Python
loop over boxes or groups); ``benchmarks/bench_nms.py`` compares it with the alternatives.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

ORIGINAL_IOU_EPS = 1e-5


def pairwise_iou_original(boxes: Tensor, eps: float = ORIGINAL_IOU_EPS) -> Tensor:
    """The original's IoU between every pair of boxes of each group.

    boxes: ``(..., K, 4)`` corner form ``[x1, y1, x2, y2]``, 0..1. Returns ``(..., K, K)`` where entry
    ``[..., i, j]`` is ``overlap / (area_j + area_i - overlap + eps)``, computed with the same float
    operations, in the same order, as the original's ``iou_of(boxes[j], boxes[i])`` (so bit-identical).
    """
    # One contiguous (..., K) tensor per coordinate and in-place steps on (..., K, K): several times
    # faster than the original's (n, 2) corner pairs, with the same float operations on each element.
    x1, y1, x2, y2 = (boxes[..., index].contiguous() for index in range(4))
    overlap = torch.minimum(x2[..., None, :], x2[..., :, None])
    overlap.sub_(torch.maximum(x1[..., None, :], x1[..., :, None])).clamp_(min=0.0)
    overlap_height = torch.minimum(y2[..., None, :], y2[..., :, None])
    overlap_height.sub_(torch.maximum(y1[..., None, :], y1[..., :, None])).clamp_(min=0.0)
    overlap.mul_(overlap_height)
    areas = torch.clamp(x2 - x1, min=0.0) * torch.clamp(y2 - y1, min=0.0)  # (..., K)
    union = areas[..., None, :] + areas[..., :, None]
    union.sub_(overlap).add_(eps)
    return overlap.div_(union)


def padded_hard_nms_original(boxes: Tensor, valid: Tensor, iou_threshold: float,
                             eps: float = ORIGINAL_IOU_EPS) -> Tensor:
    """Greedy hard NMS of many groups at once, with the original's IoU and rule.

    boxes: ``(G, K, 4)`` corner form 0..1, each group's candidates in rank order (best first);
    valid: ``(G, K)`` bool, False for padding (padding may sit anywhere). A box is kept when it is valid
    and its IoU with every kept better box of its group is ``<= iou_threshold`` (a box at exactly the
    threshold stays, as in the original). Returns the keep mask ``(G, K)`` bool.

    Exact: ``keep[j] = valid[j] and not any(keep[i] and iou[i, j] > t for i < j)`` has one solution; the
    iteration below reaches it (after step s the first s ranks are final) and stops at the first step
    that changes nothing, which is that solution. Chains of suppression are short, so few steps run.
    """
    num_ranks = boxes.shape[-2]
    if boxes.numel() == 0:
        return valid.clone()
    # suppresses[g, i, j] = 1.0 where box i ranks above box j and their IoU is above the threshold: the
    # original's ``iou <= iou_threshold`` negated (float32 IoU against the Python float), in place.
    # Padding needs no mask: it is never kept, so it suppresses nothing.
    suppresses = pairwise_iou_original(boxes, eps).gt_(iou_threshold).triu_(diagonal=1)
    keep = valid
    for _ in range(num_ranks + 1):
        # hits[g, j]: how many kept boxes of group g suppress box j (one batched matmul).
        hits = torch.bmm(keep.to(suppresses.dtype)[:, None, :], suppresses)[:, 0, :]
        new_keep = valid & (hits == 0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def batched_hard_nms_original(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float,
                              eps: float = ORIGINAL_IOU_EPS, candidate_size: Optional[int] = 200) -> Tensor:
    """Hard NMS run independently in each group, all groups at once, as the original decides it.

    boxes: ``(n, 4)`` corner form 0..1; scores: ``(n,)``; groups: ``(n,)`` int64 (e.g.
    ``image * num_classes + class``). In each group, candidates are ranked by score, best first (equal
    scores keep their input order: a stable sort, where the original's unstable sort leaves it
    unspecified), only the ``candidate_size`` best are considered (all when None or <= 0), then
    :func:`padded_hard_nms_original` decides. Returns int64 indexes into the inputs of the kept boxes,
    sorted by group (ascending), then by rank: the order the original's per-class loop produces.
    """
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    sorted_groups = groups[order]
    _, group_of, counts = torch.unique_consecutive(sorted_groups, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=scores.device) - starts[group_of]
    if candidate_size is not None and candidate_size > 0:
        considered = rank < candidate_size
        order, group_of, rank = order[considered], group_of[considered], rank[considered]
    width = int(rank.max()) + 1
    padded_boxes = boxes.new_zeros((counts.numel(), width, 4))
    valid = torch.zeros((counts.numel(), width), dtype=torch.bool, device=scores.device)
    padded_boxes[group_of, rank] = boxes[order]
    valid[group_of, rank] = True
    keep = padded_hard_nms_original(padded_boxes, valid, iou_threshold, eps)
    return order[keep[group_of, rank]]

"""SSD's MultiboxLoss: Smooth L1 on positives plus cross-entropy on positives and mined hard negatives."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vision.utils import box_utils


class MultiboxLoss(nn.Module):
    """The original toolkit's loss, with its call shape.

    ``forward(confidence (N, P, C), predicted_locations (N, P, 4), labels (N, P) int64,
    gt_locations (N, P, 4)) -> (regression_loss, classification_loss)``, each a scalar: a sum over the
    batch divided by its number of positive priors. Per image, the negatives with the highest
    background loss are kept, ``neg_pos_ratio`` per positive of that image (at least
    ``background_negatives``, so images without objects can teach what is background; 0 is the
    original's rule).

    The constructor takes the original's arguments, ``(priors, iou_threshold, neg_pos_ratio,
    center_variance, size_variance, device)``, because users' code passes them. As in the original, only
    ``neg_pos_ratio`` changes the loss: ``priors`` (moved to ``device``), ``iou_threshold``,
    ``center_variance`` and ``size_variance`` are stored and unused, since the matching and box encoding
    happen in the target transform before the loss. ``device`` may be left out here.

    Differences from the original, where it breaks: the divisor is ``max(1, positives)``, so a batch
    without any object gives a finite loss; under ``torch.distributed`` the positives are summed over
    all processes and the loss scaled by the world size, so after DDP's gradient averaging N processes
    equal one process on the combined batch.
    """

    def __init__(self, priors: Tensor, iou_threshold: float, neg_pos_ratio: int, center_variance: float,
                 size_variance: float, device: Optional[torch.device] = None, background_negatives: int = 0,
                 across_processes: Optional[bool] = None):
        super().__init__()
        # None: sum positives over processes whenever torch.distributed is initialised. A loss computed
        # on one process only (e.g. validation on rank 0) must pass False, or it would wait for the others.
        self.across_processes = across_processes
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.center_variance = center_variance
        self.size_variance = size_variance
        self.background_negatives = background_negatives
        self.priors = priors.to(device) if device is not None else priors

    def forward(self, confidence: Tensor, predicted_locations: Tensor, labels: Tensor,
                gt_locations: Tensor) -> Tuple[Tensor, Tensor]:
        num_classes = confidence.size(2)
        with torch.no_grad():
            # Mining on the background loss, -log softmax(x)[0], in float32 even under autocast.
            background_loss = -F.log_softmax(confidence.float(), dim=2)[:, :, 0]
            mask = box_utils.hard_negative_mining(background_loss, labels, self.neg_pos_ratio,
                                                  self.background_negatives)
        classification_loss = F.cross_entropy(confidence[mask, :].reshape(-1, num_classes).float(), labels[mask],
                                              reduction="sum")
        pos_mask = labels > 0
        regression_loss = F.smooth_l1_loss(predicted_locations[pos_mask, :].reshape(-1, 4).float(),
                                           gt_locations[pos_mask, :].reshape(-1, 4).float(), reduction="sum")
        num_pos = pos_mask.sum().to(torch.float32)
        scale = 1.0
        distributed = dist.is_available() and dist.is_initialized()
        if distributed and self.across_processes is not False:
            dist.all_reduce(num_pos)
            scale = float(dist.get_world_size())
        divisor = torch.clamp(num_pos, min=1.0)
        return regression_loss * scale / divisor, classification_loss * scale / divisor

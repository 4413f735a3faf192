"""Batched SSD inference: preprocess, forward, and vectorised per-class NMS on the model's device."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from vision.utils import box_utils

Detections = Tuple[Tensor, Tensor, Tensor]


class Predictor:
    """Detect objects in RGB uint8 images with an SSD net.

    ``predict(image)`` returns ``(boxes, labels, probs)`` as CPU tensors: float32 ``(K, 4)`` corner boxes
    in the image's pixels, int64 ``(K,)`` class indexes (never 0, the background), float32 ``(K,)``
    scores; ordered by class, then by score (best first), as the original toolkit orders them.

    Rule, per image and per class (as the original): scores strictly above ``prob_threshold``
    (``filter_threshold`` when None or 0), the ``candidate_size`` best, hard NMS at ``iou_threshold``
    (or Gaussian soft-NMS with ``sigma`` when ``nms_method == "soft"``), at most ``top_k`` kept (all when
    -1). All of it runs batched on the net's device: no Python loop over classes, boxes or images.
    """

    def __init__(self, net: torch.nn.Module, size: int, mean: Union[float, Sequence[float]] = 0.0, std: float = 1.0,
                 nms_method: Optional[str] = None, iou_threshold: float = 0.45, filter_threshold: float = 0.01,
                 candidate_size: int = 200, sigma: float = 0.5, device: Optional[Union[str, torch.device]] = None):
        if nms_method not in (None, "hard", "soft"):
            raise ValueError(f"nms_method must be 'hard' or 'soft', got {nms_method!r}")
        self.net = net
        self.device = torch.device(device) if device is not None else next(net.parameters()).device
        self.net.to(self.device)
        self.net.eval()
        self.size = int(size)
        mean_values = np.broadcast_to(np.asarray(mean, dtype=np.float32), (3,))
        self.mean = torch.tensor(mean_values, device=self.device).view(1, 3, 1, 1)
        self.std = float(std)
        self.nms_method = nms_method
        self.iou_threshold = iou_threshold
        self.filter_threshold = filter_threshold
        self.candidate_size = candidate_size
        self.sigma = sigma

    @classmethod
    def from_config(cls, net: torch.nn.Module, config, candidate_size: int = 200, nms_method: Optional[str] = None,
                    sigma: float = 0.5, device: Optional[Union[str, torch.device]] = None) -> "Predictor":
        """A predictor with the image size, mean, std and NMS IoU of a ``vision.ssd.config`` module."""
        return cls(net, config.image_size, config.image_mean, config.image_std, nms_method=nms_method,
                   iou_threshold=config.iou_threshold, candidate_size=candidate_size, sigma=sigma, device=device)

    # -- public API -------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, top_k: int = -1, prob_threshold: Optional[float] = None) -> Detections:
        """Detections in one RGB uint8 ``(H, W, 3)`` image; see the class docstring."""
        return self.predict_batch([image], top_k=top_k, prob_threshold=prob_threshold)[0]

    def predict_batch(self, images: Sequence[np.ndarray], top_k: int = -1,
                      prob_threshold: Optional[float] = None) -> List[Detections]:
        """``predict`` on each image (sizes may differ) in one forward pass; same results, faster."""
        if len(images) == 0:
            return []
        batch = self.preprocess(images)
        scores, boxes = self.forward(batch)
        sizes = [image.shape[:2] for image in images]
        return self.postprocess(scores, boxes, sizes, top_k=top_k, prob_threshold=prob_threshold)

    # -- stages (public so benchmarks can time them) ----------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> Tensor:
        """Resize each uint8 image to the net's size with ``cv2.resize`` (INTER_LINEAR, as the original:
        another resize changes detections), then ``(x - mean) / std`` on the device.
        Returns float32 ``(N, 3, size, size)``."""
        resized = []
        for index, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise ValueError(f"image {index}: expected an RGB uint8 array of shape (H, W, 3), got {described}")
            resized.append(cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR))
        batch = torch.from_numpy(np.stack(resized)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float()
        return (batch - self.mean) / self.std

    @torch.no_grad()
    def forward(self, batch: Tensor) -> Tuple[Tensor, Tensor]:
        """Net forward: ``(scores (N, P, C) softmaxed, boxes (N, P, 4) corner form 0..1)``; decodes
        here when the net was built with ``is_test=False``."""
        first, second = self.net(batch)
        if getattr(self.net, "is_test", True):
            return first, second
        config = self.net.config
        scores = torch.softmax(first, dim=2)
        boxes = box_utils.convert_locations_to_boxes(second, self.net.priors, config.center_variance, config.size_variance)
        return scores, box_utils.center_form_to_corner_form(boxes)

    @torch.no_grad()
    def postprocess(self, scores: Tensor, boxes: Tensor, sizes: Sequence[Tuple[int, int]], top_k: int = -1,
                    prob_threshold: Optional[float] = None) -> List[Detections]:
        """Per-class filtering and NMS of a batch. scores ``(N, P, C)``, boxes ``(N, P, 4)`` corner 0..1,
        sizes: ``(height, width)`` of each original image. Returns one ``(boxes, labels, probs)`` per image."""
        threshold = prob_threshold if prob_threshold else self.filter_threshold
        num_images, num_priors, num_classes = scores.shape
        class_scores = scores[:, :, 1:]  # background is never detected
        if self.nms_method == "soft":
            image_index, prior_index, class_index = (class_scores > threshold).nonzero(as_tuple=True)
            candidate_scores = class_scores[image_index, prior_index, class_index]
        else:
            # The candidate_size best of each (image, class) at once: top-k along the prior axis.
            best_scores, best_priors = class_scores.topk(min(self.candidate_size, num_priors), dim=1)
            image_index, rank, class_index = (best_scores > threshold).nonzero(as_tuple=True)
            candidate_scores = best_scores[image_index, rank, class_index]
            prior_index = best_priors[image_index, rank, class_index]
        labels = class_index + 1
        groups = image_index * num_classes + labels
        candidate_boxes = boxes[image_index, prior_index]

        if self.nms_method == "soft":
            kept_boxes, kept_scores, kept_groups = box_utils.batched_soft_nms(
                candidate_boxes, candidate_scores, groups, threshold, self.sigma, top_k)
        else:
            keep = batched_nms(candidate_boxes, candidate_scores, groups, self.iou_threshold)
            # batched_nms sorts by score; a stable sort by group keeps that order inside each group.
            keep = keep[torch.argsort(groups[keep], stable=True)]
            kept_boxes, kept_scores, kept_groups = candidate_boxes[keep], candidate_scores[keep], groups[keep]
        if top_k > 0 and kept_groups.numel() > 0:
            within = _rank_within_runs(kept_groups)
            kept_boxes, kept_scores, kept_groups = kept_boxes[within < top_k], kept_scores[within < top_k], kept_groups[within < top_k]

        kept_images = torch.div(kept_groups, num_classes, rounding_mode="floor")
        kept_labels = kept_groups - kept_images * num_classes
        heights_widths = torch.tensor(sizes, dtype=torch.float32, device=kept_boxes.device)  # (N, 2)
        scale = heights_widths[kept_images][:, [1, 0, 1, 0]]
        kept_boxes = kept_boxes * scale
        counts = torch.bincount(kept_images, minlength=num_images).tolist()
        per_image = zip(kept_boxes.float().cpu().split(counts), kept_labels.cpu().split(counts), kept_scores.float().cpu().split(counts))
        return [(b, l, s) for b, l, s in per_image]


def _rank_within_runs(sorted_groups: Tensor) -> Tensor:
    """Position of each element inside its run of equal values: ``[3, 3, 5, 5, 5] -> [0, 1, 0, 1, 2]``."""
    positions = torch.arange(sorted_groups.numel(), device=sorted_groups.device)
    run_start = torch.ones_like(sorted_groups, dtype=torch.bool)
    run_start[1:] = sorted_groups[1:] != sorted_groups[:-1]
    first_of_run = torch.cummax(torch.where(run_start, positions, torch.zeros_like(positions)), dim=0).values
    return positions - first_of_run

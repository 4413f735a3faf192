"""Batched SSD inference: preprocess, forward, and vectorised per-class NMS on the model's device."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from vision.ssd import engines
from vision.ssd.fusion import FusedNetCache
from vision.utils import box_utils
from vision.utils.image_size import as_width_height
from vision.utils.nms import padded_hard_nms_original

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

    Hard NMS decides exactly as the original (``exact_original_nms=True``, the default): candidates ranked
    by score (equal scores: lower prior index first), the original's IoU with its ``1e-5`` in the union
    (0..1 units), a box kept when its IoU with every kept better box is ``<= iou_threshold``; see
    ``vision.utils.nms``. ``exact_original_nms=False`` uses ``torchvision.ops.batched_nms`` instead
    (epsilon-free IoU), for net types whose reference is torchvision. Those also set ``clip_boxes`` (boxes
    clipped to the image before NMS) and ``max_detections`` (the best ``max_detections`` of an image kept
    after NMS and ``top_k``, torchvision's ``detections_per_img``; None or 0, the original's rule: no cap).

    The forward pass runs on ``engine`` (:mod:`vision.ssd.engines`): ``"auto"`` (the default) runs the fastest
    engine measured for ``net_type`` on a CPU once enough images are expected (:meth:`expect_images`) or
    seen to pay for building it, eager PyTorch before that and on other devices; ``"eager"`` always runs the
    net itself; ``"onnxruntime"``, ``"torchscript"`` or ``"compile"`` that engine from the first call (CPU
    only). Detections are eager's (scores within 1e-5).
    """

    def __init__(self, net: torch.nn.Module, size: Union[int, Tuple[int, int]],
                 mean: Union[float, Sequence[float]] = 0.0, std: float = 1.0,
                 nms_method: Optional[str] = None, iou_threshold: float = 0.45, filter_threshold: float = 0.01,
                 candidate_size: int = 200, sigma: float = 0.5, device: Optional[Union[str, torch.device]] = None,
                 exact_original_nms: bool = True, clip_boxes: bool = False, max_detections: Optional[int] = None,
                 engine: str = "auto"):
        if nms_method not in (None, "hard", "soft"):
            raise ValueError(f"nms_method must be 'hard' or 'soft', got {nms_method!r}")
        self.net = net
        self.device = torch.device(device) if device is not None else next(net.parameters()).device
        if engines.check_engine(engine) not in ("auto", "eager") and self.device.type != "cpu":
            raise ValueError(f"engine {engine}: runs on the CPU only (the net is on {self.device}); use auto or eager")
        self.net.to(self.device)
        self.net.eval()
        # (width, height) of the net's input; an int is a square, as the original's ``size``.
        self.size = as_width_height(size)
        mean_values = np.broadcast_to(np.asarray(mean, dtype=np.float32), (3,))
        self.mean = torch.tensor(mean_values, device=self.device).view(1, 3, 1, 1)
        self.std = float(std)
        self.nms_method = nms_method
        self.iou_threshold = iou_threshold
        self.filter_threshold = filter_threshold
        self.candidate_size = candidate_size
        self.sigma = sigma
        self.exact_original_nms = exact_original_nms
        self.clip_boxes = clip_boxes  # torchvision's rule: boxes clipped to the image before NMS
        self.max_detections = max_detections  # per image, best scores first, after NMS; None or 0: no cap
        # None: on a CPU, an is_test net runs as a copy with BatchNorm folded into its convolutions
        # (vision.ssd.fusion; the net itself is untouched, detections within 1e-5). True/False force it.
        self.fuse_batchnorm: Optional[bool] = None
        self._fused = FusedNetCache()
        self.engine = engine
        self.net_type: Optional[str] = None  # the registry's name (create_predictor sets it): picks "auto"'s engine
        self.engine_cache_folder: Optional[str] = None  # None: engines.default_cache_folder()
        self.engine_report: Callable[[str], None] = engines.log.info  # told once per build what it cost
        self._engine = engines.EngineSlot()
        self._images_seen = 0
        self._images_expected = 0.0

    @classmethod
    def from_config(cls, net: torch.nn.Module, config, candidate_size: int = 200, nms_method: Optional[str] = None,
                    sigma: float = 0.5, device: Optional[Union[str, torch.device]] = None) -> "Predictor":
        """A predictor with the image size, mean, std and NMS IoU of ``config`` (an ``SSDConfig``, usually
        ``net.config``; a ``vision.ssd.config`` module also works)."""
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
        Returns float32 ``(N, 3, height, width)`` for ``size`` ``(width, height)``."""
        resized = []
        for index, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                described = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                             else type(image).__name__)
                raise ValueError(f"image {index}: expected an RGB uint8 array of shape (H, W, 3), got {described}")
            resized.append(cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR))
        batch = torch.from_numpy(np.stack(resized)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).float()
        return (batch - self.mean) / self.std

    def expect_images(self, count: Optional[int]) -> None:
        """Say how many images are coming (None: an open-ended stream), so that ``engine="auto"`` builds
        its engine at the next forward pass when they pay for it (``vision.ssd.engines.MIN_IMAGES``)."""
        self._images_expected = engines.expected_count(count)

    def selected_engine(self, batch_size: int = 1) -> str:
        """The engine the next forward pass of ``batch_size`` images runs on: ``"eager"`` or an engine name."""
        applies = (self.device.type == "cpu" and not self.net.training and bool(getattr(self.net, "is_test", False))
                   and not self._engine.failed)
        if self.engine == "eager" or not applies:
            return "eager"
        if self.engine != "auto":
            return self.engine
        if self._engine.built or engines.pays_off(self._images_expected, self._images_seen, batch_size):
            return engines.auto_engine(self.net_type)
        return "eager"

    @property
    def last_engine_build(self) -> Optional[engines.EngineBuild]:
        """What the last engine build did and cost (None before one)."""
        return self._engine.last_build

    def inference_net(self) -> torch.nn.Module:
        """The module the eager forward pass runs: the net, or its BatchNorm-folded copy (see ``fuse_batchnorm``)."""
        fuse = self.fuse_batchnorm
        if fuse is None:
            fuse = self.device.type == "cpu" and bool(getattr(self.net, "is_test", False))
        return self._fused.get(self.net) if fuse and not self.net.training else self.net

    @torch.no_grad()
    def forward(self, batch: Tensor) -> Tuple[Tensor, Tensor]:
        """Net forward: ``(scores (N, P, C) softmaxed, boxes (N, P, 4) corner form 0..1)``; decodes
        here when the net was built with ``is_test=False``. Runs on :meth:`selected_engine`."""
        batch_size = batch.shape[0]
        engine = self.selected_engine(batch_size)
        self._images_seen += batch_size
        if engine != "eager":
            runner = self._engine.runner_for(engine, self.net, self.net_type, self.engine_cache_folder,
                                             self.engine_report)
            if runner is not None:
                return runner(batch)
        first, second = self.inference_net()(batch)
        if getattr(self.net, "is_test", True):
            return first, second
        config = self.net.config
        scores = torch.softmax(first, dim=2)
        if hasattr(self.net, "decode_boxes"):  # a net type with its own box coding (torchvision's BoxCoder)
            return scores, self.net.decode_boxes(second)
        boxes = box_utils.convert_locations_to_boxes(second, self.net.priors, config.center_variance,
                                                     config.size_variance)
        return scores, box_utils.center_form_to_corner_form(boxes)

    @torch.no_grad()
    def postprocess(self, scores: Tensor, boxes: Tensor, sizes: Sequence[Tuple[int, int]], top_k: int = -1,
                    prob_threshold: Optional[float] = None) -> List[Detections]:
        """Per-class filtering and NMS of a batch. scores ``(N, P, C)``, boxes ``(N, P, 4)`` corner 0..1,
        sizes: ``(height, width)`` of each original image. Returns one ``(boxes, labels, probs)`` per image,
        the boxes clipped to the image (``0 <= x <= width``, ``0 <= y <= height``)."""
        threshold = prob_threshold if prob_threshold else self.filter_threshold
        num_images, num_priors, num_classes = scores.shape
        class_scores = scores[:, :, 1:]  # background is never detected
        if self.clip_boxes:
            boxes = boxes.clamp(0.0, 1.0)  # corner form 0..1: clipping to the image
        if self.nms_method == "soft":
            image_index, prior_index, class_index = (class_scores > threshold).nonzero(as_tuple=True)
            candidate_scores = class_scores[image_index, prior_index, class_index]
            groups = image_index * num_classes + class_index + 1
            kept_boxes, kept_scores, kept_groups = box_utils.batched_soft_nms(
                boxes[image_index, prior_index], candidate_scores, groups, threshold, self.sigma, top_k)
        elif self.exact_original_nms:
            kept_boxes, kept_scores, kept_groups = self._exact_hard_nms(class_scores, boxes, threshold)
        else:
            # The candidate_size best of each (image, class) at once: top-k along the prior axis.
            best_scores, best_priors = class_scores.topk(min(self.candidate_size, num_priors), dim=1)
            image_index, rank, class_index = (best_scores > threshold).nonzero(as_tuple=True)
            candidate_scores = best_scores[image_index, rank, class_index]
            prior_index = best_priors[image_index, rank, class_index]
            groups = image_index * num_classes + class_index + 1
            candidate_boxes = boxes[image_index, prior_index]
            keep = batched_nms(candidate_boxes, candidate_scores, groups, self.iou_threshold)
            # batched_nms sorts by score; a stable sort by group keeps that order inside each group.
            keep = keep[torch.argsort(groups[keep], stable=True)]
            kept_boxes, kept_scores, kept_groups = candidate_boxes[keep], candidate_scores[keep], groups[keep]
        if top_k > 0 and kept_groups.numel() > 0:
            within = _rank_within_runs(kept_groups)
            kept_boxes, kept_scores, kept_groups = (kept_boxes[within < top_k], kept_scores[within < top_k],
                                                    kept_groups[within < top_k])
        if self.max_detections and self.max_detections > 0 and kept_groups.numel() > 0:
            selected = _best_per_image(torch.div(kept_groups, num_classes, rounding_mode="floor"), kept_scores,
                                       self.max_detections)
            kept_boxes, kept_scores, kept_groups = kept_boxes[selected], kept_scores[selected], kept_groups[selected]

        kept_images = torch.div(kept_groups, num_classes, rounding_mode="floor")
        kept_labels = kept_groups - kept_images * num_classes
        heights_widths = torch.tensor(sizes, dtype=torch.float32, device=kept_boxes.device)  # (N, 2)
        scale = heights_widths[kept_images][:, [1, 0, 1, 0]]
        # Clipped to the image after NMS, so the selection stays the original's; forward() keeps raw boxes.
        kept_boxes = kept_boxes.clamp(0.0, 1.0) * scale
        counts = torch.bincount(kept_images, minlength=num_images).tolist()
        per_image = zip(kept_boxes.float().cpu().split(counts), kept_labels.cpu().split(counts),
                        kept_scores.float().cpu().split(counts))
        return [(b, labels, s) for b, labels, s in per_image]

    def _exact_hard_nms(self, class_scores: Tensor, boxes: Tensor, threshold: float) -> Tuple[Tensor, Tensor, Tensor]:
        """The original's hard NMS for every (image, class) at once. class_scores ``(N, P, C-1)`` (no
        background), boxes ``(N, P, 4)`` corner 0..1. Returns kept ``(boxes, scores, groups)``, groups
        ``image * C + class``, sorted by group then best first."""
        num_images, num_priors, num_foreground = class_scores.shape
        scores_by_class = class_scores.transpose(1, 2)  # (N, C-1, P)
        ranked_scores, ranked_priors = _ranked_candidates(scores_by_class, self.candidate_size, threshold)
        valid = ranked_scores > threshold  # a prefix of each row: rows are sorted best first
        width = int(valid.sum(dim=2).max()) if valid.numel() else 0
        if width == 0:
            return (boxes.new_zeros((0, 4)), class_scores.new_zeros(0),
                    torch.zeros(0, dtype=torch.int64, device=boxes.device))
        ranked_scores, ranked_priors, valid = ranked_scores[..., :width], ranked_priors[..., :width], valid[..., :width]
        # Only (image, class) rows with a candidate take part; the pairwise matrix is (rows, width, width).
        rows = valid[..., 0].nonzero(as_tuple=True)
        image_index, class_index = rows
        row_priors, row_valid = ranked_priors[rows], valid[rows]
        row_boxes = boxes[image_index[:, None], row_priors]  # (R, width, 4)
        keep = padded_hard_nms_original(row_boxes, row_valid, self.iou_threshold)
        row_of, rank = keep.nonzero(as_tuple=True)  # row-major: by (image, class), then rank
        groups = image_index[row_of] * (num_foreground + 1) + class_index[row_of] + 1
        return row_boxes[row_of, rank], ranked_scores[rows][row_of, rank], groups


def _ranked_candidates(scores: Tensor, candidate_size: int, threshold: float) -> Tuple[Tensor, Tensor]:
    """The ``candidate_size`` best of each row of ``scores (..., P)``, best first, equal scores in prior
    order (a stable descending sort, truncated). Returns ``(scores, prior indexes)``, each ``(..., K)``;
    the order of entries at or below ``threshold`` (never candidates) is left unspecified.

    ``topk`` is several times faster than a full sort but orders equal scores arbitrarily, so its result
    is repaired where candidates tie: rows are re-sorted stably by (score, prior), and a row with a tie
    across the cut falls back to the full stable sort."""
    num_priors = scores.shape[-1]
    if candidate_size <= 0 or candidate_size >= num_priors:
        return scores.sort(dim=-1, descending=True, stable=True)
    best_scores, best_priors = scores.topk(candidate_size + 1, dim=-1)
    tie_at_cut = (best_scores[..., -2] == best_scores[..., -1]) & (best_scores[..., -1] > threshold)
    best_scores, best_priors = best_scores[..., :-1], best_priors[..., :-1]
    if bool(tie_at_cut.any()):
        sorted_scores, sorted_priors = scores[tie_at_cut].sort(dim=-1, descending=True, stable=True)
        best_scores[tie_at_cut], best_priors[tie_at_cut] = (sorted_scores[:, :candidate_size],
                                                            sorted_priors[:, :candidate_size])
    if bool(((best_scores[..., 1:] == best_scores[..., :-1]) & (best_scores[..., 1:] > threshold)).any()):
        by_prior = best_priors.argsort(dim=-1)
        best_scores, best_priors = best_scores.gather(-1, by_prior), best_priors.gather(-1, by_prior)
        by_score = best_scores.argsort(dim=-1, descending=True, stable=True)
        best_scores, best_priors = best_scores.gather(-1, by_score), best_priors.gather(-1, by_score)
    return best_scores, best_priors


def _best_per_image(images: Tensor, scores: Tensor, limit: int) -> Tensor:
    """Indexes (ascending, so the input order is kept) of the ``limit`` best scores of each image.
    images: int64 ``(K,)`` image index of each detection; scores: ``(K,)``."""
    by_score = torch.argsort(scores, descending=True, stable=True)
    by_image = by_score[torch.argsort(images[by_score], stable=True)]  # image, then best first
    rank = _rank_within_runs(images[by_image])
    return by_image[rank < limit].sort().values


def _rank_within_runs(sorted_groups: Tensor) -> Tensor:
    """Position of each element inside its run of equal values: ``[3, 3, 5, 5, 5] -> [0, 1, 0, 1, 2]``."""
    positions = torch.arange(sorted_groups.numel(), device=sorted_groups.device)
    run_start = torch.ones_like(sorted_groups, dtype=torch.bool)
    run_start[1:] = sorted_groups[1:] != sorted_groups[:-1]
    first_of_run = torch.cummax(torch.where(run_start, positions, torch.zeros_like(positions)), dim=0).values
    return positions - first_of_run

"""Average precision for object detection, by the PASCAL VOC protocol of the original toolkit.

Boxes everywhere in this module are corner form ``(x1, y1, x2, y2)`` in pixels, 0-based as the VOC
loader yields them (XML value - 1). Image ids may be any hashable value (VOC ids are strings).

Matching rule, per class (as the original ``eval_ssd.py`` applies it):

* detections are taken in decreasing score order;
* a detection is compared only with the ground truth box of highest IoU in its image (IoU without the
  +1 pixel, 1e-5 added to the union); it is a match when that IoU is strictly above the threshold;
* a match with a *difficult* box is ignored (neither true nor false positive);
* a match with a box that an earlier detection already took is a false positive (no fall-back to the
  next best box); so is a detection whose best IoU is not above the threshold, and a detection in an
  image without ground truth of its class;
* difficult boxes do not count among the positives.

Where the original reports NaN (ignored detections at the top of the ranking give 0/0 precision) this
module drops ignored detections from the ranking instead: they never change the cumulative counts, so
every other result is the same as the original's.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np

IOU_EPS = 1e-5  # added to the union, as the original's box_utils.iou_of
VOC2007_RECALL_THRESHOLDS = np.arange(0, 1.1, 0.1)  # the standard Python VOC code's 11 points


def compute_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the interpolated precision-recall curve (VOC2010+ "area" rule).

    precision, recall: (N,) float arrays, one point per ranked detection, recall non-decreasing.
    Precision is first made monotone (each point takes the highest precision at any higher recall),
    then summed over the recall steps. Returns a float in [0, 1]; 0.0 for empty input.
    """
    precision = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    recall = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changing_points = np.flatnonzero(recall[1:] != recall[:-1])
    areas = (recall[changing_points + 1] - recall[changing_points]) * precision[changing_points + 1]
    return float(areas.sum())


def compute_voc2007_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC2007 11-point AP: mean over t in ``numpy.arange(0, 1.1, 0.1)`` of max precision at recall >= t.

    precision, recall: (N,) float arrays, one point per ranked detection. A threshold that no point
    reaches contributes 0. Returns a float in [0, 1]; 0.0 for empty input.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.size == 0:
        return 0.0
    # Highest precision at recall >= t: a suffix maximum read at the first point reaching t.
    order = np.argsort(recall, kind="stable")
    recall_sorted = recall[order]
    suffix_max = np.maximum.accumulate(precision[order][::-1])[::-1]
    first = np.searchsorted(recall_sorted, VOC2007_RECALL_THRESHOLDS, side="left")
    reached = first < recall_sorted.size
    total = suffix_max[first[reached]].sum()
    return float(total / len(VOC2007_RECALL_THRESHOLDS))


def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of corner-form boxes in pixels, without the +1 pixel and with 1e-5 added to the union.

    boxes_a: (N, 4), boxes_b: (M, 4). Returns (N, M) float64. Negative widths count as 0 area.
    """
    boxes_a = np.asarray(boxes_a, dtype=np.float64)
    boxes_b = np.asarray(boxes_b, dtype=np.float64)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0.0, None).prod(axis=-1)
    area_a = np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0.0, None).prod(axis=-1)
    area_b = np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0.0, None).prod(axis=-1)
    return overlap / (area_a[:, None] + area_b[None, :] - overlap + IOU_EPS)


def paired_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of row i of boxes_a with row i of boxes_b, same convention as :func:`pairwise_iou`.
    boxes_a, boxes_b: (N, 4). Returns (N,) float64."""
    boxes_a = np.asarray(boxes_a, dtype=np.float64)
    boxes_b = np.asarray(boxes_b, dtype=np.float64)
    top_left = np.maximum(boxes_a[:, :2], boxes_b[:, :2])
    bottom_right = np.minimum(boxes_a[:, 2:], boxes_b[:, 2:])
    overlap = np.clip(bottom_right - top_left, 0.0, None).prod(axis=-1)
    area_a = np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0.0, None).prod(axis=-1)
    area_b = np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0.0, None).prod(axis=-1)
    return overlap / (area_a + area_b - overlap + IOU_EPS)


class ClassGroundTruth:
    """Ground truth of one class over a data set, packed into flat arrays for vectorised matching.

    boxes: (G, 4) float64 corner pixels, 0-based, grouped by image; difficult: (G,) bool;
    image_start / image_count: (I,) int64, where the boxes of image code i are
    ``boxes[image_start[i]:image_start[i] + image_count[i]]``; image_codes maps image id -> code.
    """

    def __init__(self, gt_boxes: Mapping[Hashable, np.ndarray], gt_difficult: Mapping[Hashable, np.ndarray]):
        self.image_codes: dict = {}
        self._sorted_indices = None  # set by from_arrays, where image ids are sorted integers
        boxes, difficult, counts = [], [], []
        for image_id, image_boxes in gt_boxes.items():
            image_boxes = np.asarray(image_boxes, dtype=np.float64).reshape(-1, 4)
            if image_boxes.shape[0] == 0:
                continue  # an empty entry is the same as no ground truth in that image
            image_difficult = gt_difficult.get(image_id) if gt_difficult is not None else None
            if image_difficult is None:
                image_difficult = np.zeros(image_boxes.shape[0], dtype=bool)
            image_difficult = np.asarray(image_difficult).astype(bool).reshape(-1)
            if image_difficult.shape[0] != image_boxes.shape[0]:
                raise ValueError(
                    f"image {image_id!r}: {image_boxes.shape[0]} boxes but {image_difficult.shape[0]} difficult flags"
                )
            self.image_codes[image_id] = len(counts)
            boxes.append(image_boxes)
            difficult.append(image_difficult)
            counts.append(image_boxes.shape[0])
        self.boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        self.difficult = np.concatenate(difficult) if difficult else np.zeros(0, dtype=bool)
        self.image_count = np.asarray(counts, dtype=np.int64)
        self.image_start = np.concatenate([[0], np.cumsum(self.image_count)[:-1]]).astype(np.int64)

    @classmethod
    def from_arrays(cls, image_indices: np.ndarray, boxes: np.ndarray, difficult: np.ndarray) -> "ClassGroundTruth":
        """Build from flat arrays: image_indices (G,) int, boxes (G, 4) corner pixels 0-based, difficult (G,).

        Image ids are then the integer image indices; use :meth:`encode_image_indices` for detections.
        """
        image_indices = np.asarray(image_indices, dtype=np.int64).reshape(-1)
        order = np.argsort(image_indices, kind="stable")
        unique_indices, image_start, image_count = np.unique(
            image_indices[order], return_index=True, return_counts=True
        )
        ground_truth = cls({}, {})
        ground_truth.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order]
        ground_truth.difficult = np.asarray(difficult).astype(bool).reshape(-1)[order]
        ground_truth.image_start = image_start.astype(np.int64)
        ground_truth.image_count = image_count.astype(np.int64)
        ground_truth.image_codes = {int(index): code for code, index in enumerate(unique_indices)}
        ground_truth._sorted_indices = unique_indices
        return ground_truth

    def encode_image_indices(self, image_indices: np.ndarray) -> np.ndarray:
        """Image codes (int64) for integer image indices (vectorised :meth:`encode_image_ids`); -1: none."""
        image_indices = np.asarray(image_indices, dtype=np.int64).reshape(-1)
        known = self._sorted_indices
        if known is None:
            return self.encode_image_ids(image_indices.tolist())
        codes = np.full(image_indices.shape, -1, dtype=np.int64)
        if known.size == 0:
            return codes
        position = np.minimum(np.searchsorted(known, image_indices), known.size - 1)
        hit = known[position] == image_indices
        codes[hit] = position[hit]
        return codes

    @property
    def num_positives(self) -> int:
        """Number of non-difficult boxes: the denominator of recall."""
        return int((~self.difficult).sum())

    def encode_image_ids(self, image_ids: Sequence[Hashable]) -> np.ndarray:
        """Image codes (int64) for the given ids; -1 for an image without ground truth of this class."""
        codes = self.image_codes
        return np.fromiter((codes.get(image_id, -1) for image_id in image_ids), dtype=np.int64, count=len(image_ids))


def match_detections(
    ground_truth: ClassGroundTruth,
    image_codes: np.ndarray,
    scores: np.ndarray,
    boxes: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Label one class's detections as true or false positives by the VOC rule of this module.

    image_codes: (D,) int64 from :meth:`ClassGroundTruth.encode_image_ids` (-1: no ground truth there);
    scores: (D,) float; boxes: (D, 4) corner pixels, 0-based.
    Returns (true_positive, false_positive), two (K,) bool arrays in ranking order (score descending,
    ties kept in input order), K <= D: the ignored detections (best match difficult) are left out.
    """
    image_codes = np.asarray(image_codes, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-scores, kind="stable")
    image_codes, boxes = image_codes[order], boxes[order]
    num_detections = order.size

    # Every (detection, ground truth in the same image) pair, detection-major, ground truth in order.
    has_gt = image_codes >= 0
    counts = np.zeros(num_detections, dtype=np.int64)
    counts[has_gt] = ground_truth.image_count[image_codes[has_gt]]
    pair_detection = np.repeat(np.arange(num_detections), counts)
    pair_start = np.repeat(np.cumsum(counts) - counts, counts)
    first_gt = np.zeros(num_detections, dtype=np.int64)
    first_gt[has_gt] = ground_truth.image_start[image_codes[has_gt]]
    pair_gt = np.repeat(first_gt, counts) + (np.arange(pair_detection.size) - pair_start)
    pair_iou = paired_iou(boxes[pair_detection], ground_truth.boxes[pair_gt])

    # Best ground truth per detection: the first pair reaching the segment maximum (argmax's choice).
    best_iou = np.full(num_detections, -np.inf)
    with_pairs = counts > 0
    if with_pairs.any():
        segment_starts = (np.cumsum(counts) - counts)[with_pairs]
        best_iou[with_pairs] = np.maximum.reduceat(pair_iou, segment_starts)
    is_best = pair_iou == best_iou[pair_detection]
    best_detection, first_pair = np.unique(pair_detection[is_best], return_index=True)
    best_gt = np.full(num_detections, -1, dtype=np.int64)
    best_gt[best_detection] = pair_gt[is_best][first_pair]

    above = best_iou > iou_threshold
    ignored = np.zeros(num_detections, dtype=bool)
    ignored[above] = ground_truth.difficult[best_gt[above]]
    candidate = above & ~ignored
    # Each ground truth box goes to the first (highest ranked) candidate that picks it.
    true_positive = np.zeros(num_detections, dtype=bool)
    _, first_claim = np.unique(best_gt[candidate], return_index=True)
    true_positive[np.flatnonzero(candidate)[first_claim]] = True
    kept = ~ignored
    return true_positive[kept], ~true_positive[kept]


def precision_recall(true_positive: np.ndarray, false_positive: np.ndarray, num_positives: int):
    """Cumulative precision and recall along the ranking.

    true_positive, false_positive: (K,) bool in ranking order; num_positives > 0.
    Returns (precision, recall), two (K,) float64 arrays.
    """
    true_cumsum = np.cumsum(true_positive, dtype=np.float64)
    false_cumsum = np.cumsum(false_positive, dtype=np.float64)
    precision = true_cumsum / np.maximum(true_cumsum + false_cumsum, 1.0)
    recall = true_cumsum / num_positives
    return precision, recall


def average_precision_from_pr(precision: np.ndarray, recall: np.ndarray, use_2007_metric: bool = True) -> float:
    """AP from a precision-recall curve: 11-point (``use_2007_metric``) or area under the curve."""
    if use_2007_metric:
        return compute_voc2007_average_precision(precision, recall)
    return compute_average_precision(precision, recall)


def voc_pr_curve(
    ground_truth: ClassGroundTruth,
    image_ids: Sequence[Hashable] | np.ndarray,
    scores: np.ndarray,
    boxes: np.ndarray,
    iou_threshold: float = 0.5,
    image_ids_are_codes: bool = False,
):
    """Precision and recall of one class's ranked detections, or (None, None) without positives.

    image_ids: (D,) image ids (or codes from ``ground_truth.encode_image_ids`` when
    ``image_ids_are_codes``); scores: (D,); boxes: (D, 4) corner pixels, 0-based.
    """
    if ground_truth.num_positives == 0:
        return None, None
    codes = np.asarray(image_ids, dtype=np.int64) if image_ids_are_codes else ground_truth.encode_image_ids(image_ids)
    true_positive, false_positive = match_detections(ground_truth, codes, scores, boxes, iou_threshold)
    return precision_recall(true_positive, false_positive, ground_truth.num_positives)


def voc_average_precision(
    gt_boxes: Mapping[Hashable, np.ndarray],
    gt_difficult: Mapping[Hashable, np.ndarray],
    detections: Sequence[tuple],
    iou_threshold: float = 0.5,
    use_2007_metric: bool = True,
) -> float:
    """VOC average precision of one class.

    gt_boxes: image id -> (n, 4) float corner boxes in pixels, 0-based; gt_difficult: image id -> (n,)
    bool (a missing entry means none difficult); detections: sequence of
    ``(image_id, score, x1, y1, x2, y2)``, 0-based corner pixels, in any order.
    iou_threshold: a detection matches when its best IoU is strictly above it.
    use_2007_metric: VOC2007 11-point AP if true, else area under the interpolated PR curve.
    Returns AP in [0, 1], or ``nan`` when the class has no non-difficult ground truth.
    """
    ground_truth = ClassGroundTruth(gt_boxes, gt_difficult)
    if ground_truth.num_positives == 0:
        return float("nan")
    image_ids = [detection[0] for detection in detections]
    values = np.array([detection[1:6] for detection in detections], dtype=np.float64).reshape(-1, 5)
    precision, recall = voc_pr_curve(ground_truth, image_ids, values[:, 0], values[:, 1:5], iou_threshold)
    return average_precision_from_pr(precision, recall, use_2007_metric)

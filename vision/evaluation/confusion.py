"""Per-class diagnosis at one operating point: a confusion matrix with "missed" and "background", and the
recall and precision it gives.

AP summarises a whole ranking; a class at AP 0 needs a different question answered: are its boxes found
but called something else, found twice, not found at all, or is the class predicted on empty background?
The matrix answers that at one score threshold.

Definition (K classes, BACKGROUND left out; boxes in 0-based corner pixels, as the records hold them):

* rows are the K ground-truth classes plus a last ``background`` row; columns are the K predicted classes
  plus a last ``missed`` column, so the matrix is (K + 1, K + 1) int64 counts;
* only detections with score strictly above ``score_threshold`` take part;
* per image, these detections are taken in decreasing score order (ties keep their record order); each
  takes the ground-truth box of highest IoU (any class; ties: the first box) among the boxes no earlier
  detection took, provided that IoU is strictly above ``iou_threshold`` (IoU as the VOC metric computes
  it, :func:`vision.evaluation.metrics.pairwise_iou`);
* a detection that took a box counts in row = the box's class, column = the detection's class: a correct
  detection is on the diagonal, a wrong class off it;
* a detection that took no box (on background, a duplicate of a box already taken, or poorly placed)
  counts in the ``background`` row, in its class's column;
* a ground-truth box that no detection took counts in its class's row, ``missed`` column;
* difficult boxes are left out as the VOC metric leaves them out: they are no row's boxes and never
  missed, and a detection whose best free box is a difficult one is counted nowhere; a difficult box
  is never taken, so every detection on it is ignored alike;
* the cell (``background``, ``missed``) is always 0.

So a row sums to the class's non-difficult boxes and a column to the class's detections above the
threshold that were not ignored. Recall at the threshold is the diagonal over the row sum, precision the
diagonal over the column sum (nan where the sum is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vision.evaluation.metrics import paired_iou
from vision.evaluation.records import EvalRecords

DEFAULT_CONFUSION_THRESHOLD = 0.5
BACKGROUND_ROW = "background"
MISSED_COLUMN = "missed"


@dataclass(frozen=True)
class ConfusionMatrix:
    """The matrix of the module docstring and the thresholds it was made at.

    class_names: the K classes (BACKGROUND left out), in label order 1..K; counts: (K + 1, K + 1) int64,
    rows ``class_names + ["background"]``, columns ``class_names + ["missed"]``.
    """

    class_names: list[str]
    counts: np.ndarray
    score_threshold: float
    iou_threshold: float

    @property
    def row_names(self) -> list[str]:
        return [*self.class_names, BACKGROUND_ROW]

    @property
    def column_names(self) -> list[str]:
        return [*self.class_names, MISSED_COLUMN]

    @property
    def num_ground_truth(self) -> np.ndarray:
        """(K,) int64: non-difficult boxes of each class (the row sums)."""
        return self.counts[:-1].sum(axis=1)

    @property
    def num_detections(self) -> np.ndarray:
        """(K,) int64: counted detections of each class above the threshold (the column sums)."""
        return self.counts[:, :-1].sum(axis=0)

    @property
    def true_positives(self) -> np.ndarray:
        """(K,) int64: the diagonal."""
        return np.diagonal(self.counts)[:-1].copy()

    @property
    def missed(self) -> np.ndarray:
        """(K,) int64: boxes of each class that no detection took."""
        return self.counts[:-1, -1].copy()

    @property
    def background_detections(self) -> np.ndarray:
        """(K,) int64: detections of each class that took no box."""
        return self.counts[-1, :-1].copy()

    @property
    def recall(self) -> np.ndarray:
        """(K,) float64: diagonal / row sum, nan for a class without (non-difficult) ground truth."""
        return _ratio(self.true_positives, self.num_ground_truth)

    @property
    def precision(self) -> np.ndarray:
        """(K,) float64: diagonal / column sum, nan for a class without detections above the threshold."""
        return _ratio(self.true_positives, self.num_detections)

    def confused_with(self, label_index: int) -> dict[str, int]:
        """Boxes of class ``class_names[label_index]`` taken by detections of another class: other class
        name -> count, nonzero counts only, largest first."""
        row = self.counts[label_index, :-1].copy()
        row[label_index] = 0
        others = np.flatnonzero(row)
        others = others[np.argsort(-row[others], kind="stable")]
        return {self.class_names[other]: int(row[other]) for other in others}

    def per_class(self) -> dict[str, dict]:
        """class name -> recall_at_threshold, precision_at_threshold, num_ground_truth, num_detections,
        missed, background_detections, confused_with (as :meth:`confused_with`); floats may be nan."""
        recall, precision = self.recall, self.precision
        ground_truth, detections = self.num_ground_truth, self.num_detections
        missed, background = self.missed, self.background_detections
        return {
            name: {
                "recall_at_threshold": float(recall[k]),
                "precision_at_threshold": float(precision[k]),
                "num_ground_truth": int(ground_truth[k]),
                "num_detections": int(detections[k]),
                "missed": int(missed[k]),
                "background_detections": int(background[k]),
                "confused_with": self.confused_with(k),
            }
            for k, name in enumerate(self.class_names)
        }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def greedy_match(
    det_image: np.ndarray,
    det_scores: np.ndarray,
    det_boxes: np.ndarray,
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_keeps_free: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """The box each detection takes by the greedy rule of the module docstring, regardless of class.

    det_image (D,) int64, det_scores (D,), det_boxes (D, 4); gt_image (G,) int64, gt_boxes (G, 4), corner
    pixels. gt_keeps_free (G,) bool: a box that stays free when taken (a difficult box), so that every
    detection on it takes it. Returns (D,) int64: the index of the box taken, -1 for none.
    """
    num_det, num_gt = len(det_image), len(gt_image)
    taken_box = np.full(num_det, -1, dtype=np.int64)
    if num_det == 0 or num_gt == 0:
        return taken_box
    det_image = np.asarray(det_image, dtype=np.int64)
    gt_image = np.asarray(gt_image, dtype=np.int64)

    # Rank of each detection in its image, best score first (ties in record order).
    by_score = np.argsort(-np.asarray(det_scores, dtype=np.float64), kind="stable")
    order = by_score[np.argsort(det_image[by_score], kind="stable")]
    sorted_images = det_image[order]
    rank = np.empty(num_det, dtype=np.int64)
    rank[order] = np.arange(num_det) - np.searchsorted(sorted_images, sorted_images, side="left")

    # Every (detection, box) pair of one image, then only those above the IoU threshold.
    gt_order = np.argsort(gt_image, kind="stable")
    gt_sorted_images = gt_image[gt_order]
    first_box = np.searchsorted(gt_sorted_images, det_image, side="left")
    boxes_in_image = np.searchsorted(gt_sorted_images, det_image, side="right") - first_box
    pair_det = np.repeat(np.arange(num_det), boxes_in_image)
    pair_start = np.cumsum(boxes_in_image) - boxes_in_image
    within = np.arange(pair_det.size) - np.repeat(pair_start, boxes_in_image)
    pair_gt = gt_order[np.repeat(first_box, boxes_in_image) + within]
    iou = paired_iou(np.asarray(det_boxes)[pair_det], np.asarray(gt_boxes)[pair_gt])
    above = iou > iou_threshold
    pair_det, pair_gt, iou = pair_det[above], pair_gt[above], iou[above]
    if pair_det.size == 0:
        return taken_box

    # By rank, then detection, then best IoU first (ties: the first box).
    pair_order = np.lexsort((pair_gt, -iou, pair_det, rank[pair_det]))
    pair_det, pair_gt = pair_det[pair_order], pair_gt[pair_order]
    pair_rank = rank[pair_det]
    bounds = np.flatnonzero(np.diff(pair_rank)) + 1
    bounds = np.concatenate([[0], bounds, [pair_rank.size]])
    taken = np.zeros(num_gt, dtype=bool)
    keeps_free = np.asarray(gt_keeps_free, dtype=bool)
    # One step per rank, not per box: the r-th detections of all images are in different images, so they
    # never compete for a box and are settled together; a rank waits only for the ranks above it.
    for start, stop in zip(bounds[:-1], bounds[1:]):
        dets, gts = pair_det[start:stop], pair_gt[start:stop]
        free = ~taken[gts]
        dets, gts = dets[free], gts[free]
        if dets.size == 0:
            continue
        best = np.concatenate([[True], dets[1:] != dets[:-1]])
        dets, gts = dets[best], gts[best]
        taken_box[dets] = gts
        taken[gts[~keeps_free[gts]]] = True
    return taken_box


def confusion_matrix(
    records: EvalRecords,
    class_names: Sequence[str],
    score_threshold: float = DEFAULT_CONFUSION_THRESHOLD,
    iou_threshold: float = 0.5,
) -> ConfusionMatrix:
    """The confusion matrix of the module docstring from gathered records.

    class_names: BACKGROUND first; label i of the records is class_names[i] (labels 1..K expected, a
    ValueError otherwise). Detections the records left out (the evaluation keeps those above 0.01) take
    no part, so score_threshold should not be below that.
    """
    num_classes = len(class_names) - 1
    if num_classes < 1:
        raise ValueError("class_names must hold BACKGROUND and at least one class")
    for what, labels in (("ground truth", records.gt_labels), ("detection", records.det_labels)):
        bad = (labels < 1) | (labels > num_classes)
        if bad.any():
            raise ValueError(f"{what} label {int(labels[bad][0])} is outside 1..{num_classes} "
                             f"(the {num_classes} classes after BACKGROUND)")
    kept = records.det_scores > score_threshold
    det_labels = records.det_labels[kept]
    taken_box = greedy_match(records.det_image[kept], records.det_scores[kept], records.det_boxes[kept],
                             records.gt_image, records.gt_boxes, records.gt_difficult, iou_threshold)
    # A last, sentinel box stands for "none" (index -1): its row is background, and it is not difficult.
    box_row = np.append(records.gt_labels - 1, num_classes)[taken_box]
    counted = ~np.append(records.gt_difficult, False)[taken_box]
    rows, columns = box_row[counted], det_labels[counted] - 1
    width = num_classes + 1
    counts = np.bincount(rows * width + columns, minlength=width * width).reshape(width, width)

    was_taken = np.zeros(len(records.gt_labels), dtype=bool)
    was_taken[taken_box[taken_box >= 0]] = True
    missed = ~was_taken & ~records.gt_difficult
    counts[:-1, -1] = np.bincount(records.gt_labels[missed] - 1, minlength=num_classes)
    return ConfusionMatrix(list(class_names[1:]), counts.astype(np.int64), float(score_threshold),
                           float(iou_threshold))

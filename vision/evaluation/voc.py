"""VOC-protocol scoring of gathered records: per-class AP, PR curves and the mean over classes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vision.evaluation.metrics import ClassGroundTruth, average_precision_from_pr, voc_pr_curve
from vision.evaluation.records import EvalRecords


@dataclass
class ClassResult:
    """Score of one class. ap is nan when the class has no non-difficult ground truth (then precision
    and recall are empty). precision, recall: (K,) along the ranking, ignored detections left out."""

    name: str
    ap: float
    num_positives: int
    num_detections: int
    precision: np.ndarray
    recall: np.ndarray


@dataclass
class VOCResult:
    """Per-class results (classes 1.., background left out) and the mean AP over classes with ground truth."""

    classes: list[ClassResult]
    iou_threshold: float
    use_2007_metric: bool

    @property
    def mean_ap(self) -> float:
        aps = [result.ap for result in self.classes if not math.isnan(result.ap)]
        return float(np.mean(aps)) if aps else float("nan")


def score_voc(
    records: EvalRecords,
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    use_2007_metric: bool = True,
) -> VOCResult:
    """AP of each class 1..len(class_names)-1 by the VOC protocol of :mod:`vision.evaluation.metrics`.

    class_names: BACKGROUND first; label i of the records is class_names[i].
    """
    results = []
    for label in range(1, len(class_names)):
        is_gt = records.gt_labels == label
        ground_truth = ClassGroundTruth.from_arrays(
            records.gt_image[is_gt], records.gt_boxes[is_gt], records.gt_difficult[is_gt]
        )
        is_det = records.det_labels == label
        num_detections = int(is_det.sum())
        precision, recall = voc_pr_curve(
            ground_truth,
            ground_truth.encode_image_indices(records.det_image[is_det]),
            records.det_scores[is_det],
            records.det_boxes[is_det],
            iou_threshold,
            image_ids_are_codes=True,
        )
        if precision is None:
            ap, precision, recall = float("nan"), np.zeros(0), np.zeros(0)
        else:
            ap = average_precision_from_pr(precision, recall, use_2007_metric)
        results.append(
            ClassResult(class_names[label], ap, ground_truth.num_positives, num_detections, precision, recall)
        )
    return VOCResult(results, iou_threshold, use_2007_metric)

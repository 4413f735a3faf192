"""COCO-style scoring (mAP@[.5:.95], mAP@.5, mAP@.75) of gathered records through pycocotools.

Boxes go to pycocotools as [x, y, w, h] from the 0-based corners (its IoU has no +1 pixel either).
Difficult VOC boxes become ``iscrowd`` regions, so detections on them are ignored rather than counted
false, the closest COCO has to VOC's rule (note that a crowd region's IoU is over the detection's area).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vision.evaluation.records import EvalRecords


@dataclass
class COCOResult:
    """mAP over IoU 0.50:0.95, at 0.50 and at 0.75 (area all, 100 detections per image and class);
    per_class_ap: AP@[.5:.95] of classes 1.. (nan without ground truth); precision: pycocotools'
    accumulated precision array (T IoUs, R=101 recall points, K classes) for area all, maxDets 100,
    -1 where undefined; recall_thresholds: (R,)."""

    map_50_95: float
    map_50: float
    map_75: float
    class_names: list[str]
    per_class_ap: list[float]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    precision: np.ndarray


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def to_coco_ground_truth(records: EvalRecords, class_names: Sequence[str]) -> dict:
    """A COCO-format ground-truth dict: image id = image index, category id = label (1..)."""
    xywh = _xywh(records.gt_boxes)
    heights, widths = records.image_sizes[:, 0].tolist(), records.image_sizes[:, 1].tolist()
    return {
        "images": [{"id": i, "height": heights[i], "width": widths[i]} for i in range(records.num_images)],
        "categories": [{"id": label, "name": class_names[label]} for label in range(1, len(class_names))],
        "annotations": [
            {
                "id": annotation_id + 1,  # pycocotools treats id 0 as "no match"
                "image_id": image,
                "category_id": label,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": int(difficult),
            }
            for annotation_id, (image, label, box, difficult) in enumerate(
                zip(records.gt_image.tolist(), records.gt_labels.tolist(), xywh.tolist(), records.gt_difficult.tolist())
            )
        ],
    }


def score_coco(records: EvalRecords, class_names: Sequence[str], ground_truth=None) -> COCOResult:
    """COCO bbox metrics of the records (class_names: BACKGROUND first). pycocotools' own prints are
    swallowed so that the evaluation's stdout keeps its shape.

    ground_truth: None to score against the records' ground truth; or a
    vision.datasets.coco.COCOGroundTruth (the data set's original instances JSON, the COCO image id of
    each data set image id and the category id of each label), so that the figures equal the official
    tools' on that file (its iscrowd and area fields included), over the evaluated images only.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    num_classes = len(class_names) - 1
    keep = (records.det_labels >= 1) & (records.det_labels <= num_classes)
    image_column = records.det_image[keep].astype(np.int64)
    label_column = records.det_labels[keep].astype(np.int64)
    with contextlib.redirect_stdout(io.StringIO()):
        if ground_truth is None:
            coco_gt = COCO()
            coco_gt.dataset = to_coco_ground_truth(records, class_names)
            coco_gt.createIndex()
            image_ids = list(range(records.num_images))
            category_ids = list(range(1, num_classes + 1))
        else:
            coco_gt = COCO(str(ground_truth.annotation_file))
            coco_of_image = np.array([ground_truth.image_ids[image_id] for image_id in records.image_ids], np.int64)
            image_ids = coco_of_image.tolist()
            # Model classes match the JSON's categories by name; a class the JSON lacks (a COCO model's
            # other classes on a subset, torchvision's N/A gaps) cannot be judged, so it is left out.
            all_category_ids = [ground_truth.category_ids[label] for label in range(1, num_classes + 1)]
            judged = np.array([category is not None for category in all_category_ids])
            if not judged.any():
                raise ValueError(f"{ground_truth.annotation_file}: none of the model's classes names a category")
            scored_classes = np.flatnonzero(judged)
            category_ids = [all_category_ids[k] for k in scored_classes]
            judged_detection = judged[label_column - 1]
            image_column, label_column = image_column[judged_detection], label_column[judged_detection]
            keep[np.flatnonzero(keep)[~judged_detection]] = False
            image_column = coco_of_image[image_column] if image_column.size else image_column
            label_column = np.array([0] + [c or 0 for c in all_category_ids], np.int64)[label_column]
        detections = np.concatenate(
            [
                image_column[:, None].astype(np.float64),
                _xywh(records.det_boxes[keep]),
                records.det_scores[keep, None].astype(np.float64),
                label_column[:, None].astype(np.float64),
            ],
            axis=1,
        )
        evaluator = COCOeval(coco_gt, _load_detections(coco_gt, detections), iouType="bbox")
        evaluator.params.catIds = category_ids
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # precision: [T, R, K, A, M]; area "all" is index 0, maxDets 100 the last.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    if ground_truth is not None and len(category_ids) != num_classes:  # back to one column per class
        full = np.full(precision.shape[:2] + (num_classes,), -1.0)
        full[:, :, scored_classes] = precision
        precision = full
    per_class_ap = []
    for k in range(num_classes):
        defined = precision[:, :, k][precision[:, :, k] > -1]
        per_class_ap.append(float(defined.mean()) if defined.size else float("nan"))
    stats = [float(value) if value > -1 else float("nan") for value in evaluator.stats[:3]]
    return COCOResult(
        map_50_95=stats[0],
        map_50=stats[1],
        map_75=stats[2],
        class_names=list(class_names[1:]),
        per_class_ap=per_class_ap,
        iou_thresholds=np.asarray(evaluator.params.iouThrs),
        recall_thresholds=np.asarray(evaluator.params.recThrs),
        precision=precision,
    )


def _load_detections(coco_gt, detections: np.ndarray):
    """``coco_gt.loadRes`` for an (N, 7) [image, x, y, w, h, score, class] array, also when N is 0."""
    if detections.shape[0]:
        return coco_gt.loadRes(detections)
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": coco_gt.dataset["categories"],
        "annotations": [],
    }
    empty.createIndex()
    return empty


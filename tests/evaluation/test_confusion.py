"""The per-class diagnosis (vision.evaluation.confusion): the confusion matrix on a case made by hand,
the greedy matching against a plain reference, and the files and summary entries write_outputs adds."""

import csv
import json
import math

import numpy as np
import pytest

from vision.evaluation.confusion import confusion_matrix, greedy_match
from vision.evaluation.inference import InferenceTiming
from vision.evaluation.metrics import pairwise_iou
from vision.evaluation.records import EvalRecords
from vision.evaluation.report import format_class_diagnosis
from vision.evaluation.runner import Evaluation, evaluate, write_outputs
from vision.evaluation.voc import score_voc

CLASS_NAMES = ["BACKGROUND", "cat", "dog", "bird", "fish"]


def _records(ground_truth, detections, num_images):
    """ground_truth: (image, label, box, difficult) rows; detections: (image, label, score, box) rows."""
    return EvalRecords(
        image_ids=[f"img{i}" for i in range(num_images)],
        image_sizes=np.full((num_images, 2), 100, dtype=np.int64),
        gt_image=np.array([row[0] for row in ground_truth], dtype=np.int64),
        gt_labels=np.array([row[1] for row in ground_truth], dtype=np.int64),
        gt_boxes=np.array([row[2] for row in ground_truth], dtype=np.float32).reshape(-1, 4),
        gt_difficult=np.array([row[3] for row in ground_truth], dtype=bool),
        det_image=np.array([row[0] for row in detections], dtype=np.int64),
        det_labels=np.array([row[1] for row in detections], dtype=np.int64),
        det_scores=np.array([row[2] for row in detections], dtype=np.float32),
        det_boxes=np.array([row[3] for row in detections], dtype=np.float32).reshape(-1, 4),
    )


CAT, DOG, BIRD = 1, 2, 3
HAND_GROUND_TRUTH = [
    (0, CAT, [0, 0, 10, 10], False),
    (0, DOG, [20, 20, 30, 30], False),
    (1, BIRD, [0, 0, 10, 10], False),        # no detection near it: missed
    (1, DOG, [50, 50, 60, 60], True),        # difficult
    (2, DOG, [0, 0, 10, 10], False),
    (2, CAT, [2, 0, 12, 10], False),         # IoU 2/3 with the dog box beside it
]
HAND_DETECTIONS = [
    (0, CAT, 0.9, [0, 0, 10, 10]),           # correct: (cat, cat)
    (0, CAT, 0.8, [0, 0, 10, 10]),           # duplicate of the cat, no other box near: background
    (0, CAT, 0.7, [20, 20, 30, 30]),         # wrong class on the dog: (dog, cat)
    (0, DOG, 0.3, [20, 20, 30, 30]),         # below the operating threshold: not counted
    (1, DOG, 0.95, [50, 50, 60, 60]),        # on the difficult box: not counted
    (1, DOG, 0.9, [50, 50, 60, 60]),         # again on it: not counted either
    (1, BIRD, 0.6, [100, 100, 110, 110]),    # on background
    (2, CAT, 0.8, [0, 0, 10, 10]),           # listed first but scored lower: the dog box is taken, so the cat
    (2, DOG, 0.9, [0, 0, 10, 10]),           # box (IoU 2/3) is its best free one: (cat, cat); this: (dog, dog)
    (4, DOG, 0.99, [0, 0, 5, 5]),            # an image without ground truth: background
    (4, DOG, 0.5, [0, 0, 5, 5]),             # exactly at the threshold: not above it, not counted
]


def _hand_case():
    return confusion_matrix(_records(HAND_GROUND_TRUTH, HAND_DETECTIONS, 5), CLASS_NAMES, 0.5, 0.5)


def test_hand_made_case_fills_every_cell():
    confusion = _hand_case()
    assert confusion.row_names == ["cat", "dog", "bird", "fish", "background"]
    assert confusion.column_names == ["cat", "dog", "bird", "fish", "missed"]
    np.testing.assert_array_equal(confusion.counts, [
        # cat dog bird fish missed
        [2, 0, 0, 0, 0],   # cat
        [1, 1, 0, 0, 0],   # dog (the difficult one is in no cell)
        [0, 0, 0, 0, 1],   # bird
        [0, 0, 0, 0, 0],   # fish: no ground truth, no detection
        [1, 1, 1, 0, 0],   # background
    ])
    assert confusion.counts.dtype == np.int64


def test_recall_and_precision_at_threshold_come_from_the_matrix():
    confusion = _hand_case()
    np.testing.assert_array_equal(confusion.recall[:3], [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(confusion.precision[:3], [0.5, 0.5, 0.0])
    assert math.isnan(confusion.recall[3]) and math.isnan(confusion.precision[3])
    per_class = confusion.per_class()
    assert per_class["dog"] == {
        "recall_at_threshold": 0.5, "precision_at_threshold": 0.5, "num_ground_truth": 2, "num_detections": 2,
        "missed": 0, "background_detections": 1, "confused_with": {"cat": 1},
    }
    assert per_class["bird"]["missed"] == 1 and per_class["bird"]["confused_with"] == {}
    assert per_class["cat"]["num_detections"] == 4 and per_class["cat"]["background_detections"] == 1


def test_operating_threshold_decides_which_detections_count():
    records = _records(HAND_GROUND_TRUTH, HAND_DETECTIONS, 5)
    lower = confusion_matrix(records, CLASS_NAMES, 0.2, 0.5)
    # The 0.3 dog on the dog box comes in, after the 0.7 cat took that box: a background dog. The 0.5 dog
    # of image 4 comes in too, on background.
    assert lower.counts[4, 1] == _hand_case().counts[4, 1] + 2
    # Only the 0.99 dog is above 0.95 (0.95 itself is not): every non-difficult box is missed.
    strict = confusion_matrix(records, CLASS_NAMES, 0.95, 0.5).counts
    np.testing.assert_array_equal(strict, [[0, 0, 0, 0, 2], [0, 0, 0, 0, 2], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0],
                                           [0, 1, 0, 0, 0]])


def test_iou_must_be_above_the_threshold():
    ground_truth = [(0, CAT, [0, 0, 10, 10], False)]
    half_overlap = [(0, CAT, 0.9, [0, 0, 10, 20])]  # IoU 100 / (200 + 1e-5), just under 0.5
    counts = confusion_matrix(_records(ground_truth, half_overlap, 1), CLASS_NAMES, 0.5, 0.5).counts
    assert counts[0, 0] == 0 and counts[0, 4] == 1 and counts[4, 0] == 1
    counts = confusion_matrix(_records(ground_truth, half_overlap, 1), CLASS_NAMES, 0.5, 0.49).counts
    assert counts[0, 0] == 1 and counts[:, 4].sum() == 0


def test_empty_records_and_bad_labels():
    empty = confusion_matrix(EvalRecords(), CLASS_NAMES)
    assert empty.counts.shape == (5, 5) and empty.counts.sum() == 0
    only_detections = confusion_matrix(_records([], [(0, BIRD, 0.9, [0, 0, 5, 5])], 1), CLASS_NAMES)
    assert only_detections.counts[4, 2] == 1 and only_detections.counts.sum() == 1
    with pytest.raises(ValueError, match="detection label 5 is outside 1..4"):
        confusion_matrix(_records([], [(0, 5, 0.9, [0, 0, 5, 5])], 1), CLASS_NAMES)


def _reference_greedy(records, iou_threshold):
    """The rule of the module docstring, one image and one detection at a time."""
    taken_box = np.full(len(records.det_image), -1)
    for image in range(records.num_images):
        boxes = np.flatnonzero(records.gt_image == image)
        detections = np.flatnonzero(records.det_image == image)
        detections = detections[np.argsort(-records.det_scores[detections], kind="stable")]
        taken = set()
        for detection in detections:
            free = [box for box in boxes if box not in taken]
            if not free:
                continue
            iou = pairwise_iou(records.det_boxes[detection:detection + 1], records.gt_boxes[free])[0]
            best = int(np.argmax(iou))
            if iou[best] > iou_threshold:
                taken_box[detection] = free[best]
                if not records.gt_difficult[free[best]]:
                    taken.add(free[best])
    return taken_box


def test_vectorised_matching_equals_one_detection_at_a_time():
    rng = np.random.default_rng(3)
    ground_truth, detections = [], []
    for image in range(60):
        centres = rng.uniform(20, 80, size=(int(rng.integers(0, 5)), 2))
        for centre in centres:
            ground_truth.append((image, int(rng.integers(1, 5)), [*(centre - 10), *(centre + 10)],
                                 bool(rng.random() < 0.15)))
        for _ in range(int(rng.integers(0, 8))):
            centre = centres[rng.integers(len(centres))] if len(centres) and rng.random() < 0.8 \
                else rng.uniform(20, 80, size=2)
            centre = centre + rng.normal(0, 3, size=2)
            # Scores on a coarse grid, so that ties occur and must keep record order.
            detections.append((image, int(rng.integers(1, 5)), float(rng.integers(1, 10)) / 10,
                               [*(centre - 10), *(centre + 10)]))
    records = _records(ground_truth, detections, 60)
    taken_box = greedy_match(records.det_image, records.det_scores, records.det_boxes, records.gt_image,
                             records.gt_boxes, records.gt_difficult, 0.5)
    np.testing.assert_array_equal(taken_box, _reference_greedy(records, 0.5))
    assert (taken_box >= 0).sum() > 50 and (taken_box < 0).sum() > 10  # both outcomes well represented

    confusion = confusion_matrix(records, CLASS_NAMES, 0.0, 0.5)
    positives = [result.num_positives for result in score_voc(records, CLASS_NAMES).classes]
    np.testing.assert_array_equal(confusion.num_ground_truth, positives)


def _evaluation(confusion):
    records = _records(HAND_GROUND_TRUTH, HAND_DETECTIONS, 5)
    return Evaluation(CLASS_NAMES, "voc", records, InferenceTiming(5, 1.0), 0.0,
                      score_voc(records, CLASS_NAMES), None, confusion)


def test_write_outputs_adds_the_csv_png_and_summary_fields(tmp_path):
    summary = write_outputs(tmp_path, _evaluation(_hand_case()))
    with open(tmp_path / "confusion_matrix.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["ground truth", "cat", "dog", "bird", "fish", "missed"]
    assert [row[0] for row in rows[1:]] == ["cat", "dog", "bird", "fish", "background"]
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], dtype=np.int64), _hand_case().counts)
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["confusion_threshold"] == 0.5 == summary["confusion_threshold"]
    assert written["per_class"]["dog"]["confused_with"] == {"cat": 1}
    assert written["per_class"]["cat"]["precision_at_threshold"] == 0.5
    assert written["per_class"]["fish"]["recall_at_threshold"] is None  # nan as null


def test_without_a_threshold_nothing_is_added(tmp_path):
    evaluation = _evaluation(None)
    summary = write_outputs(tmp_path, evaluation)
    assert "per_class" not in summary and not (tmp_path / "confusion_matrix.csv").exists()
    assert "diagnosis" not in evaluation.table()


def test_printed_table_follows_the_ap_table():
    evaluation = _evaluation(_hand_case())
    lines = evaluation.table().splitlines()
    start = lines.index("Per-class diagnosis at score > 0.5, IoU > 0.5 (confusion_matrix.csv):")
    assert lines[start - 1] == "" and lines[start - 2].startswith("Average Precision Across All Classes:")
    assert lines[start + 1].split() == ["class", "recall", "precision", "missed", "background", "confused",
                                        "with"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[start + 2:]}
    assert rows == {"cat": ["1.000", "0.500", "0", "1"], "dog": ["0.500", "0.500", "0", "1", "cat", "1"],
                    "bird": ["0.000", "0.000", "1", "1"], "fish": ["-", "-", "0", "0"]}
    assert format_class_diagnosis(_hand_case()) in evaluation.table()


def test_threshold_below_the_recorded_scores_is_refused_before_inference():
    class NeverCalled:
        def predict_batch(self, *args, **kwargs):
            raise AssertionError("inference ran")

    with pytest.raises(ValueError, match="confusion_threshold 0.005"):
        evaluate(NeverCalled(), [], CLASS_NAMES, confusion_threshold=0.005, progress=False)

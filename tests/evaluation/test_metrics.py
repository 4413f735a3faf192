"""VOC average precision: hand-computed cases and agreement with a plain loop over detections."""

import math

import numpy as np
import pytest

from vision.evaluation.metrics import (
    compute_average_precision,
    compute_voc2007_average_precision,
    pairwise_iou,
    voc_average_precision,
)

BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [20.0, 20.0, 40.0, 50.0]
BOX_C = [100.0, 100.0, 150.0, 130.0]


def _gt(**images):
    return {image_id: np.array(boxes, dtype=np.float64) for image_id, boxes in images.items()}


def _both_metrics(gt_boxes, gt_difficult, detections, iou_threshold=0.5):
    return (
        voc_average_precision(gt_boxes, gt_difficult, detections, iou_threshold, use_2007_metric=True),
        voc_average_precision(gt_boxes, gt_difficult, detections, iou_threshold, use_2007_metric=False),
    )


def test_perfect_detections_give_one():
    gt_boxes = _gt(img1=[BOX_A, BOX_B], img2=[BOX_C])
    detections = [("img1", 0.9, *BOX_A), ("img1", 0.8, *BOX_B), ("img2", 0.7, *BOX_C)]
    assert _both_metrics(gt_boxes, {}, detections) == (1.0, 1.0)


def test_no_detections_give_zero():
    gt_boxes = _gt(img1=[BOX_A, BOX_B])
    assert _both_metrics(gt_boxes, {}, []) == (0.0, 0.0)


def test_duplicate_detection_is_a_false_positive():
    gt_boxes = _gt(img1=[BOX_A, BOX_B])
    detections = [("img1", 0.9, *BOX_A), ("img1", 0.8, *BOX_A), ("img1", 0.7, *BOX_B)]
    # Ranking TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # 11-point: t = 0 .. 0.5 -> 1 (6 points), t = 0.6 .. 1.0 -> 2/3 (5 points).
    ap_11, ap_area = _both_metrics(gt_boxes, {}, detections)
    assert ap_11 == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert ap_area == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_no_fall_back_to_the_next_best_ground_truth():
    wide_a = [0.0, 0.0, 10.0, 10.0]
    shifted_b = [2.0, 0.0, 12.0, 10.0]
    gt_boxes = _gt(img1=[wide_a, shifted_b])
    # The second detection overlaps B by 0.74 but A (already taken) by 0.90: it is a false positive.
    second = [0.5, 0.0, 10.5, 10.0]
    assert pairwise_iou(np.array([second]), np.array([shifted_b]))[0, 0] > 0.5
    detections = [("img1", 0.9, *wide_a), ("img1", 0.8, *second)]
    ap_11, ap_area = _both_metrics(gt_boxes, {}, detections)
    assert ap_11 == pytest.approx(6 / 11)  # precision 1 up to recall 1/2, nothing beyond
    assert ap_area == pytest.approx(0.5)


def test_detection_of_a_difficult_box_changes_nothing():
    gt_boxes = _gt(img1=[BOX_A, BOX_B], img2=[BOX_C])
    gt_difficult = {"img1": np.array([False, True]), "img2": np.array([False])}
    base = [("img1", 0.6, *BOX_A), ("img2", 0.5, 100.0, 100.0, 300.0, 300.0), ("img2", 0.4, *BOX_C)]
    expected = _both_metrics(gt_boxes, gt_difficult, base)
    # Difficult boxes are not positives: half the recall comes only with the last detection.
    assert expected[0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    for score in (0.95, 0.55, 0.1):  # at the top (no NaN), in the middle, at the bottom
        with_difficult = base + [("img1", score, *BOX_B)]
        assert _both_metrics(gt_boxes, gt_difficult, with_difficult) == pytest.approx(expected)


def test_difficult_boxes_do_not_count_as_positives():
    gt_boxes = _gt(img1=[BOX_A, BOX_B])
    gt_difficult = {"img1": np.array([0, 1], dtype=np.uint8)}
    assert _both_metrics(gt_boxes, gt_difficult, [("img1", 0.9, *BOX_A)]) == (1.0, 1.0)


def test_images_without_ground_truth_only_add_false_positives():
    gt_boxes = _gt(img1=[BOX_A])
    detections = [("img1", 0.5, *BOX_A)]
    assert _both_metrics(gt_boxes, {}, detections) == (1.0, 1.0)
    # A higher-ranked detection in an image with no ground truth: ranking FP, TP -> precision 1/2.
    with_stray = detections + [("other", 0.9, *BOX_A)]
    assert _both_metrics(gt_boxes, {}, with_stray) == pytest.approx((0.5, 0.5))
    # The same as a higher-ranked detection that misses in an image with ground truth.
    with_miss = detections + [("img1", 0.9, *BOX_C)]
    assert _both_metrics(gt_boxes, {}, with_miss) == pytest.approx((0.5, 0.5))
    # Below the true positive it changes nothing.
    assert _both_metrics(gt_boxes, {}, detections + [("other", 0.1, *BOX_A)]) == (1.0, 1.0)


def test_match_needs_iou_strictly_above_the_threshold():
    gt_boxes = _gt(img1=[[0.0, 0.0, 10.0, 10.0]])
    detection = [0.0, 0.0, 10.0, 16.0]  # IoU 100 / 160 = 0.625
    assert voc_average_precision(gt_boxes, {}, [("img1", 0.9, *detection)], iou_threshold=0.6) == 1.0
    assert voc_average_precision(gt_boxes, {}, [("img1", 0.9, *detection)], iou_threshold=0.7) == 0.0


def test_11_point_and_area_metrics_on_a_hand_computed_ranking():
    # 4 positives (one never found); ranking TP, FP, TP, TP, FP.
    # precision 1, 1/2, 2/3, 3/4, 3/5 at recall 1/4, 1/4, 1/2, 3/4, 3/4.
    gt_boxes = _gt(img1=[BOX_A, BOX_B], img2=[BOX_C, [200.0, 200.0, 220.0, 230.0]])
    detections = [
        ("img1", 0.9, *BOX_A),
        ("img2", 0.8, 0.0, 0.0, 5.0, 5.0),
        ("img1", 0.7, *BOX_B),
        ("img2", 0.6, *BOX_C),
        ("img3", 0.5, *BOX_C),
    ]
    ap_11, ap_area = _both_metrics(gt_boxes, {}, detections)
    # 11-point: t = 0, .1, .2 -> 1; t = .3 .. .7 -> 3/4; t = .8, .9, 1 -> 0.
    assert ap_11 == pytest.approx((3 * 1 + 5 * 0.75) / 11)
    # Area: recall 0..1/4 at 1, 1/4..1/2 at 3/4, 1/2..3/4 at 3/4, nothing beyond.
    assert ap_area == pytest.approx(0.25 + 0.25 * 0.75 + 0.25 * 0.75)


def test_11_point_thresholds_are_numpy_arange_values():
    # numpy.arange(0, 1.1, 0.1)[3] is 0.30000000000000004, so a recall of exactly 3/10 does not reach it
    # (as in the standard Python VOC code the original's published numbers come from).
    precision = np.ones(3)
    recall = np.array([0.1, 0.2, 0.3])
    assert compute_voc2007_average_precision(precision, recall) == pytest.approx(3 / 11)


def test_area_metric_interpolates_precision():
    precision = np.array([1.0, 0.5, 0.6])
    recall = np.array([0.5, 0.5, 0.75])
    assert compute_average_precision(precision, recall) == pytest.approx(0.5 * 1 + 0.25 * 0.6)


def test_class_without_ground_truth_gives_nan():
    assert math.isnan(voc_average_precision({}, {}, [("img1", 0.9, *BOX_A)]))
    only_difficult = _gt(img1=[BOX_A])
    assert math.isnan(voc_average_precision(only_difficult, {"img1": np.array([True])}, [("img1", 0.9, *BOX_A)]))


def test_result_does_not_depend_on_detection_order():
    gt_boxes, gt_difficult, detections = _random_problem(np.random.default_rng(3))
    expected = _both_metrics(gt_boxes, gt_difficult, detections)
    rng = np.random.default_rng(4)
    for _ in range(3):
        shuffled = [detections[i] for i in rng.permutation(len(detections))]
        assert _both_metrics(gt_boxes, gt_difficult, shuffled) == expected


def _random_problem(rng, num_images=12):
    gt_boxes, gt_difficult, detections = {}, {}, []
    for image_index in range(num_images):
        image_id = f"{image_index:06d}"
        num_gt = int(rng.integers(0, 5))
        top_left = rng.uniform(0, 200, size=(num_gt, 2))
        boxes = np.concatenate([top_left, top_left + rng.uniform(10, 80, size=(num_gt, 2))], axis=1)
        if num_gt:
            gt_boxes[image_id] = boxes
            gt_difficult[image_id] = rng.random(num_gt) < 0.2
        # Jittered copies of the ground truth (some duplicates) and random boxes.
        jittered = boxes[rng.integers(0, max(num_gt, 1), size=3 * num_gt)] if num_gt else np.zeros((0, 4))
        jittered = jittered + rng.normal(0, 6, size=jittered.shape)
        stray_top_left = rng.uniform(0, 200, size=(int(rng.integers(0, 4)), 2))
        stray = np.concatenate([stray_top_left, stray_top_left + rng.uniform(5, 60, size=stray_top_left.shape)], 1)
        for box in np.concatenate([jittered, stray]):
            detections.append((image_id, 0.0, *box.tolist()))
    scores = rng.permutation(len(detections)) / len(detections) + 1e-3  # distinct
    return gt_boxes, gt_difficult, [(d[0], float(s), *d[2:]) for d, s in zip(detections, scores)]


def _loop_average_precision(gt_boxes, gt_difficult, detections, iou_threshold, use_2007_metric):
    """The protocol written as a plain loop over ranked detections (as the original's eval does it)."""
    num_positives = sum(int((~np.asarray(gt_difficult[i], dtype=bool)).sum()) for i in gt_boxes)
    ranked = sorted(detections, key=lambda d: -d[1])
    matched, flags = set(), []
    for image_id, _, *box in ranked:
        if image_id not in gt_boxes:
            flags.append("fp")
            continue
        ious = pairwise_iou(np.array([box]), gt_boxes[image_id])[0]
        best = int(np.argmax(ious))
        if ious[best] > iou_threshold:
            if gt_difficult[image_id][best]:
                flags.append("ignored")
            elif (image_id, best) in matched:
                flags.append("fp")
            else:
                matched.add((image_id, best))
                flags.append("tp")
        else:
            flags.append("fp")
    true_positive = np.cumsum([f == "tp" for f in flags])
    false_positive = np.cumsum([f == "fp" for f in flags])
    with np.errstate(invalid="ignore"):
        precision = true_positive / (true_positive + false_positive)
    recall = true_positive / num_positives
    if use_2007_metric:
        ap = 0.0
        for t in np.arange(0, 1.1, 0.1):
            reached = recall >= t
            ap += (np.nanmax(precision[reached]) if reached.any() else 0.0) / 11
        return ap
    return compute_average_precision(np.nan_to_num(precision), recall)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_2007_metric", [True, False])
def test_agrees_with_a_plain_loop_over_detections(seed, use_2007_metric):
    gt_boxes, gt_difficult, detections = _random_problem(np.random.default_rng(seed))
    for iou_threshold in (0.3, 0.5):
        expected = _loop_average_precision(gt_boxes, gt_difficult, detections, iou_threshold, use_2007_metric)
        got = voc_average_precision(gt_boxes, gt_difficult, detections, iou_threshold, use_2007_metric)
        assert got == pytest.approx(expected, abs=1e-12)


def test_pairwise_iou_has_no_plus_one_and_eps_in_union():
    iou = pairwise_iou(np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([[5.0, 0.0, 15.0, 10.0], [20, 20, 30, 30]]))
    assert iou[0, 0] == pytest.approx(50 / (150 + 1e-5), rel=1e-12)
    assert iou[0, 1] == 0.0

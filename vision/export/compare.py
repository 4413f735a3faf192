"""Comparing an INT8 file with the float32 file it was made from: detections, latency and mAP.

The float32 1e-4 check and OpenCV DNN do not apply to an INT8 file (quantization changes every score
by far more, and OpenCV DNN's INT8 support is another matter); instead
:func:`check_int8_detections` asks that both find the same objects.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, List, Sequence, Tuple

import numpy as np

from vision.export.checks import CheckResult
from vision.export.onnx_predictor import OnnxModelError, OnnxPredictor

SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.9
# A detection just above SCORE_THRESHOLD in one file may land just below it in the other: its partner is
# looked for among the other file's detections above SCORE_THRESHOLD - SCORE_MARGIN.
SCORE_MARGIN = 0.1


def pairwise_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU ``(K, L)`` of corner-form boxes ``(K, 4)`` and ``(L, 4)`` (any consistent unit).
    numpy, as OnnxPredictor's detections are; a dozen boxes do not call for torchvision."""
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    other_areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(intersection / (areas[:, None] + other_areas[None, :] - intersection))


def unmatched(detections, candidates, score_threshold: float, iou_threshold: float) -> Tuple[int, int, List[float]]:
    """How many of ``detections`` (``(boxes, labels, probs)``) scoring above ``score_threshold`` have no
    box of the same label among ``candidates`` with IoU above ``iou_threshold``: ``(count, missed, best IoUs)``."""
    boxes, labels, probs = (np.asarray(part) for part in detections)
    other_boxes, other_labels, _ = (np.asarray(part) for part in candidates)
    strong = probs > score_threshold
    boxes, labels = boxes[strong].reshape(-1, 4), labels[strong]
    if len(labels) == 0:
        return 0, 0, []
    if len(other_labels) == 0:
        return len(labels), len(labels), [0.0] * len(labels)
    iou = pairwise_iou(boxes, other_boxes.reshape(-1, 4))
    iou[labels[:, None] != other_labels[None, :]] = 0.0
    best = iou.max(axis=1)
    return len(labels), int((best <= iou_threshold).sum()), best.tolist()


def check_int8_detections(int8_path: str, float_path: str, images: Sequence[np.ndarray],
                          score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = IOU_THRESHOLD
                          ) -> CheckResult:
    """The INT8 file loads and runs in ONNX Runtime, and on ``images`` (RGB uint8) it finds float32's objects:
    every detection scoring above ``score_threshold`` in either file has one of the same label with IoU
    above ``iou_threshold`` in the other (among its detections above ``score_threshold - SCORE_MARGIN``)."""
    try:
        quantized = OnnxPredictor(int8_path)
        int8_detections = quantized.predict_batch(images, prob_threshold=score_threshold - SCORE_MARGIN)
    except (OnnxModelError, RuntimeError) as error:
        return CheckResult("INT8 in ONNX Runtime", False, f"cannot run the file ({str(error)[:200]})")
    float_detections = OnnxPredictor(float_path).predict_batch(images, prob_threshold=score_threshold - SCORE_MARGIN)
    counts, misses, ious = [0, 0], [0, 0], []
    for reference, candidate in zip(float_detections, int8_detections):
        for side, (ours, theirs) in enumerate(((reference, candidate), (candidate, reference))):
            count, missed, best = unmatched(ours, theirs, score_threshold, iou_threshold)
            counts[side] += count
            misses[side] += missed
            ious += best
    ok = misses == [0, 0]
    mean_iou = f", mean IoU {np.mean(ious):.3f}" if ious else ""
    message = (f"{counts[0]} float32 and {counts[1]} INT8 detections above {score_threshold} on {len(images)} "
               f"images; unmatched (same label, IoU > {iou_threshold}): {misses[0]} float32, {misses[1]} INT8"
               f"{mean_iou}")
    return CheckResult("INT8 against float32 in ONNX Runtime", ok, message)


def forward_latency_ms(onnx_path: str, image: np.ndarray, repeats: int = 20, **options) -> float:
    """Median milliseconds of one ONNX Runtime run at batch 1 on ``image`` (preprocessed first; the
    outputs' postprocessing is not timed), after two warm-up runs. ``options`` go to OnnxPredictor."""
    predictor = OnnxPredictor(onnx_path, **options)
    batch = predictor.preprocess([image])
    for _ in range(2):
        predictor.forward(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.forward(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def mean_ap(path: str, dataset, class_names: Sequence[str], metric: str = "voc") -> float:
    """Mean AP of the exported file ``path`` on ``dataset`` (``vision.evaluation.evaluate``, VOC07 by default)."""
    from vision.evaluation import evaluate  # start-up time: scoring is needed by the INT8 reports only

    return float(evaluate(OnnxPredictor(path), dataset, class_names, metric=metric, progress=False).mean_ap)


def compare_map(float_path: str, int8_path: str, dataset, class_names: Sequence[str],
                metric: str = "voc") -> Tuple[float, float]:
    """Mean AP of the float32 and the INT8 file on ``dataset`` (see :func:`mean_ap`)."""
    return mean_ap(float_path, dataset, class_names, metric), mean_ap(int8_path, dataset, class_names, metric)


def map_within(dataset, class_names: Sequence[str], reference_map: float,
               tolerance: float) -> Callable[[str], Tuple[bool, float]]:
    """The sensitivity pass's ``accept``: an INT8 file is good enough when its mAP on ``dataset`` is at least
    ``reference_map - tolerance``; returns ``(good enough, its mAP)``."""
    def accept(path: str) -> Tuple[bool, float]:
        value = mean_ap(path, dataset, class_names)
        return value >= reference_map - tolerance, value

    return accept

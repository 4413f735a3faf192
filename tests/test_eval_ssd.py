"""eval_ssd: the evaluation pipeline on stub data, and end to end with real nets on VOC-format sets."""

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from vision.cli.eval_ssd import str2bool
from vision.evaluation import evaluate, write_outputs
from vision.evaluation.report import format_ap_table
from vision.utils.measurements import voc_average_precision

REPO = Path(__file__).resolve().parents[1]
VOC_SAMPLE = REPO.parent / "shared" / "datasets" / "voc2007-sample"
VOC_LABELS = REPO / "models" / "voc-model-labels.txt"


class StubDataset:
    """In-memory VOC-like data set: images of varied sizes, 2 of 3 classes present, some difficult boxes."""

    class_names = ["BACKGROUND", "circle", "square", "never_seen"]

    def __init__(self, num_images=23, seed=0):
        rng = np.random.default_rng(seed)
        self.ids = [f"img_{i:03d}" for i in range(num_images)]
        self.sizes = [(int(rng.integers(200, 400)), int(rng.integers(250, 500))) for _ in range(num_images)]
        self.annotations = []
        for height, width in self.sizes:
            count = int(rng.integers(1, 4))
            top_left = rng.uniform(0, [width - 60, height - 60], size=(count, 2))
            boxes = np.concatenate([top_left, top_left + rng.uniform(20, 60, size=(count, 2))], axis=1)
            labels = rng.integers(1, 3, size=count)
            self.annotations.append((boxes.astype(np.float32), labels.astype(np.int64), rng.random(count) < 0.2))

    def __len__(self):
        return len(self.ids)

    def get_image(self, index):
        height, width = self.sizes[index]
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[..., 0] = index  # lets the stub predictor recognise the image
        return image

    def get_annotation(self, index):
        return self.ids[index], self.annotations[index]


class StubPredictor:
    """Returns each image's ground truth, shifted by `jitter` pixels with random noise, plus one stray box."""

    def __init__(self, dataset, jitter=0.0, seed=1):
        self.dataset, self.jitter, self.rng = dataset, jitter, np.random.default_rng(seed)
        self.calls = []

    def predict_batch(self, images, top_k=-1, prob_threshold=None):
        self.calls.append((len(images), prob_threshold))
        outputs = []
        for image in images:
            index = int(image[0, 0, 0])
            assert image.shape[:2] == self.dataset.sizes[index] and image.dtype == np.uint8
            boxes, labels, _ = self.dataset.annotations[index]
            noise = np.random.default_rng(index).normal(0, self.jitter, size=boxes.shape)
            boxes = np.concatenate([boxes + noise, [[0, 0, 15, 15]]]).astype(np.float32)
            labels = np.concatenate([labels, [1]])
            scores = np.random.default_rng(1000 + index).uniform(0.05, 1.0, size=len(labels)).astype(np.float32)
            outputs.append((torch.from_numpy(boxes), torch.from_numpy(labels), torch.from_numpy(scores)))
        return outputs


def _class_ground_truth(dataset, label):
    boxes, difficult = {}, {}
    for index, image_id in enumerate(dataset.ids):
        image_boxes, labels, image_difficult = dataset.annotations[index]
        if (labels == label).any():
            boxes[image_id] = image_boxes[labels == label]
            difficult[image_id] = image_difficult[labels == label]
    return boxes, difficult


def _parse_det_file(path):
    rows = [line.split() for line in Path(path).read_text().splitlines()]
    return [(row[0], float(row[1]), *(float(value) for value in row[2:])) for row in rows]


def test_exact_ground_truth_scores_one_and_class_without_ground_truth_is_left_out():
    dataset = StubDataset()

    class ExactPredictor(StubPredictor):
        def predict_batch(self, images, top_k=-1, prob_threshold=None):
            outputs = super().predict_batch(images, top_k, prob_threshold)
            return [(boxes[:-1], labels[:-1], scores[:-1]) for boxes, labels, scores in outputs]  # no stray box

    for metric in ("voc", "coco"):
        evaluation = evaluate(ExactPredictor(dataset), dataset, dataset.class_names, metric=metric,
                              batch_size=4, num_workers=0, progress=False)
        assert evaluation.per_class_ap[:2] == pytest.approx([1.0, 1.0])
        assert math.isnan(evaluation.per_class_ap[2])
        assert evaluation.mean_ap == pytest.approx(1.0)
        assert "never_seen: nan (no ground truth)" in evaluation.table().splitlines()


def test_predictor_gets_batches_of_original_images_at_eval_threshold():
    dataset = StubDataset(num_images=10)
    predictor = StubPredictor(dataset)
    evaluate(predictor, dataset, dataset.class_names, batch_size=4, num_workers=0, progress=False)
    assert predictor.calls == [(4, 0.01), (4, 0.01), (2, 0.01)]


def test_batching_and_workers_do_not_change_the_result():
    dataset = StubDataset()
    results = []
    for batch_size, num_workers in ((1, 0), (5, 2)):
        evaluation = evaluate(StubPredictor(dataset, jitter=4.0), dataset, dataset.class_names,
                              batch_size=batch_size, num_workers=num_workers, progress=False)
        results.append((evaluation.records.image_ids, evaluation.per_class_ap))
    assert results[0][0] == dataset.ids
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("use_2007_metric", [True, False])
def test_written_detection_files_rescore_to_the_printed_ap(tmp_path, use_2007_metric):
    dataset = StubDataset()
    evaluation = evaluate(StubPredictor(dataset, jitter=5.0), dataset, dataset.class_names,
                          use_2007_metric=use_2007_metric, batch_size=6, num_workers=0, progress=False)
    write_outputs(tmp_path, evaluation, {"net": "stub"})
    for label, name in enumerate(dataset.class_names[1:], start=1):
        detections = _parse_det_file(tmp_path / f"det_test_{name}.txt")
        # 1-based pixels in the file, as the original: subtract 1 before scoring.
        detections = [(image_id, score, *(value - 1.0 for value in box)) for image_id, score, *box in detections]
        boxes, difficult = _class_ground_truth(dataset, label)
        expected = voc_average_precision(boxes, difficult, detections, 0.5, use_2007_metric)
        got = evaluation.per_class_ap[label - 1]
        assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected, abs=1e-6)
    assert 0.0 < evaluation.mean_ap < 1.0  # the stray boxes and the jitter cost something


def test_detection_file_lines_are_image_id_score_and_one_based_box(tmp_path):
    dataset = StubDataset(num_images=3)
    predictor = StubPredictor(dataset)
    evaluation = evaluate(predictor, dataset, dataset.class_names, batch_size=3, num_workers=0, progress=False)
    write_outputs(tmp_path, evaluation)
    boxes, labels, scores = StubPredictor(dataset).predict_batch([dataset.get_image(0)])[0]
    first_circle = int(np.flatnonzero(labels.numpy() == 1)[0])
    image_id, score, *box = _parse_det_file(tmp_path / "det_test_circle.txt")[0]
    assert image_id == "img_000"
    assert score == pytest.approx(float(scores[first_circle]), rel=1e-6)
    np.testing.assert_allclose(box, boxes[first_circle].numpy() + 1.0, rtol=1e-6)
    assert (tmp_path / "det_test_never_seen.txt").read_text() == ""


def test_summary_json_and_plots(tmp_path):
    dataset = StubDataset()
    evaluation = evaluate(StubPredictor(dataset, jitter=3.0), dataset, dataset.class_names,
                          num_workers=0, progress=False)
    write_outputs(tmp_path, evaluation, {"net": "stub"})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["net"] == "stub" and summary["num_images"] == len(dataset)
    assert summary["per_class_ap"]["never_seen"] is None  # nan as null: valid JSON
    assert summary["mean_ap"] == pytest.approx(evaluation.mean_ap)
    expected_positives = sum(int((~d[(l == 1)]).sum()) for _, l, d in dataset.annotations)
    assert summary["num_ground_truth"]["circle"] == expected_positives
    for name in ("circle", "square"):
        assert (tmp_path / f"pr_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "pr_never_seen.png").exists()


def test_table_has_the_original_shape():
    text = format_ap_table(["aeroplane", "bicycle", "bird"], [0.5, float("nan"), 0.25], 0.375)
    assert text.splitlines() == [
        "",
        "Average Precision Per-class:",
        "aeroplane: 0.5",
        "bicycle: nan (no ground truth)",
        "bird: 0.25",
        "",
        "Average Precision Across All Classes:0.375",
    ]


@pytest.mark.parametrize("text,value", [("true", True), ("Yes", True), ("1", True), ("False", False),
                                        ("no", False), ("0", False)])
def test_str2bool_accepts_the_original_spellings(text, value):
    assert str2bool(text) is value


def test_str2bool_rejects_other_words():
    with pytest.raises(Exception):
        str2bool("maybe")

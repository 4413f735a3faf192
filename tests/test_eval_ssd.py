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

from vision.evaluation import evaluate, write_outputs
from vision.evaluation.metrics import voc_average_precision
from vision.evaluation.report import format_ap_table

REPO = Path(__file__).resolve().parents[1]
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


@pytest.mark.timeout(180)  # a worker deadlock must fail, not hang the suite
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
    expected_positives = sum(int((~d[(labels == 1)]).sum()) for _, labels, d in dataset.annotations)
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


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    dataset = StubDataset(num_images=6)
    bad = {2, 4}

    class DatasetWithBadImages(StubDataset):
        def get_image(self, index):
            return None if index in bad else super().get_image(index)

        def get_annotation(self, index):
            image_id, annotation = super().get_annotation(index)
            if index in bad:  # as VOCDataset for a malformed XML: empty arrays
                return image_id, (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.uint8))
            return image_id, annotation

    broken = DatasetWithBadImages(num_images=6)
    evaluation = evaluate(StubPredictor(dataset), broken, broken.class_names, batch_size=4, num_workers=0,
                          progress=False)
    assert evaluation.records.image_ids == [dataset.ids[i] for i in range(6) if i not in bad]
    summary = write_outputs(tmp_path, evaluation)
    assert summary["skipped_images"] == [dataset.ids[i] for i in sorted(bad)]


# ---- end to end, real nets with deterministic weights ------------------------------------------------


def _xml_ground_truth(root, split):
    """name -> (image id -> 0-based boxes, difficult flags), read straight from the VOC XML files."""
    ids = (Path(root) / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    by_class = {}
    for image_id in ids:
        tree = ElementTree.parse(Path(root) / "Annotations" / f"{image_id}.xml")
        for obj in tree.findall("object"):
            box = obj.find("bndbox")
            corners = [float(box.find(tag).text) - 1.0 for tag in ("xmin", "ymin", "xmax", "ymax")]
            difficult = obj.find("difficult")
            is_difficult = difficult is not None and difficult.text.strip() == "1"
            boxes, flags = by_class.setdefault(obj.find("name").text.strip(), ({}, {}))
            boxes.setdefault(image_id, []).append(corners)
            flags.setdefault(image_id, []).append(is_difficult)
    return {name: ({i: np.array(b) for i, b in boxes.items()}, {i: np.array(f) for i, f in flags.items()})
            for name, (boxes, flags) in by_class.items()}


def _parse_printout(stdout):
    """The AP table: {class: ap or nan}, mean; checks the blank lines before each heading."""
    lines = stdout.splitlines()
    start = lines.index("Average Precision Per-class:")
    assert lines[start - 1] == ""
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("Average Precision Across All Classes:"))
    assert lines[end - 1] == ""
    per_class = {}
    for line in lines[start + 1:end - 1]:
        name, value = line.rsplit(": ", 1) if "(no ground truth)" not in line else (line.split(": ")[0], "nan")
        per_class[name] = float(value)
    return per_class, float(lines[end].split(":", 1)[1])


@pytest.fixture(scope="module")
def synthetic_voc(tmp_path_factory):
    from vision.datasets.synthetic import generate_voc_dataset

    root = tmp_path_factory.mktemp("shapes")
    generate_voc_dataset(root, num_images=0, num_test=10, seed=5)
    return root


def _saved_weights(directory, net_type, num_classes):
    from vision.ssd.registry import create_net
    from vision.utils.reference_weights import load_deterministic_weights

    path = Path(directory) / f"{net_type}-{num_classes}.pth"
    torch.save(load_deterministic_weights(create_net(net_type, num_classes)).state_dict(), path)
    return path


@pytest.mark.timeout(180)  # a worker deadlock must fail, not hang the suite
def test_eval_on_synthetic_voc_set_matches_rescoring_its_files(synthetic_voc, tmp_path, capsys):
    from vision.cli.eval_ssd import main

    weights = _saved_weights(tmp_path, "mb1-ssd", 6)
    eval_dir = tmp_path / "eval"
    # A model label file whose order differs from the data set's labels.txt: names must follow the model.
    model_classes = ["ring", "star", "triangle", "square", "circle"]
    label_file = tmp_path / "model-labels.txt"
    label_file.write_text("BACKGROUND\n" + "\n".join(model_classes) + "\n")
    main(["--net", "mb1-ssd", "--trained_model", str(weights), "--dataset", str(synthetic_voc),
          "--label_file", str(label_file), "--eval_dir", str(eval_dir), "--batch_size", "4",
          "--num_workers", "1", "--use_cuda", "false"])
    out = capsys.readouterr().out
    per_class, mean_ap = _parse_printout(out)
    assert list(per_class) == model_classes
    assert mean_ap == pytest.approx(np.mean(list(per_class.values())))

    # The det_test files (1-based boxes) rescored against the XML give the printed APs.
    ground_truth = _xml_ground_truth(synthetic_voc, "test")
    summary = json.loads((eval_dir / "summary.json").read_text())
    total_lines = 0
    for name, printed in per_class.items():
        detections = _parse_det_file(eval_dir / f"det_test_{name}.txt")
        total_lines += len(detections)
        detections = [(image_id, score, *(v - 1.0 for v in box)) for image_id, score, *box in detections]
        boxes, difficult = ground_truth[name]
        assert printed == pytest.approx(voc_average_precision(boxes, difficult, detections), abs=1e-6)
        assert summary["per_class_ap"][name] == pytest.approx(printed)
        assert summary["num_ground_truth"][name] == sum(int((~flags).sum()) for flags in difficult.values())
        assert (eval_dir / f"pr_{name}.png").stat().st_size > 0
    assert total_lines == summary["num_detections"] > 0
    assert summary["num_images"] == 10
    _check_confusion_outputs(eval_dir, synthetic_voc, model_classes, out, summary)


def _check_confusion_outputs(eval_dir, root, class_names, out, summary):
    """confusion_matrix.csv is the matrix recomputed from the det_test files and the XML at the default
    thresholds (0.5, 0.5); summary.json's per_class entries and the printed table agree with it."""
    import csv

    from vision.evaluation.confusion import confusion_matrix
    from vision.evaluation.records import EvalRecords

    ids = (Path(root) / "ImageSets" / "Main" / "test.txt").read_text().split()
    index = {image_id: i for i, image_id in enumerate(ids)}
    gt_rows, det_rows = [], []
    for image_id in ids:
        for obj in ElementTree.parse(Path(root) / "Annotations" / f"{image_id}.xml").findall("object"):
            box = obj.find("bndbox")
            corners = [float(box.find(tag).text) - 1.0 for tag in ("xmin", "ymin", "xmax", "ymax")]
            difficult = obj.find("difficult") is not None and obj.find("difficult").text.strip() == "1"
            gt_rows.append((index[image_id], class_names.index(obj.find("name").text.strip()) + 1, corners, difficult))
    for label, name in enumerate(class_names, start=1):
        for image_id, score, *box in _parse_det_file(eval_dir / f"det_test_{name}.txt"):
            det_rows.append((index[image_id], label, score, [value - 1.0 for value in box]))
    records = EvalRecords(
        image_ids=ids, image_sizes=np.zeros((len(ids), 2), dtype=np.int64),
        gt_image=np.array([row[0] for row in gt_rows]), gt_labels=np.array([row[1] for row in gt_rows]),
        gt_boxes=np.array([row[2] for row in gt_rows], dtype=np.float32),
        gt_difficult=np.array([row[3] for row in gt_rows], dtype=bool),
        det_image=np.array([row[0] for row in det_rows]), det_labels=np.array([row[1] for row in det_rows]),
        det_scores=np.array([row[2] for row in det_rows], dtype=np.float32),
        det_boxes=np.array([row[3] for row in det_rows], dtype=np.float32))
    expected = confusion_matrix(records, ["BACKGROUND", *class_names], 0.5, 0.5)

    with open(eval_dir / "confusion_matrix.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["ground truth", *class_names, "missed"]
    assert [row[0] for row in rows[1:]] == [*class_names, "background"]
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], dtype=np.int64), expected.counts)
    assert expected.counts[-1].sum() > 0  # detections above 0.5, so the comparison means something
    assert (eval_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert summary["confusion_threshold"] == 0.5
    for k, name in enumerate(class_names):
        entry = summary["per_class"][name]
        assert entry["num_ground_truth"] == summary["num_ground_truth"][name] == expected.counts[k].sum()
        assert entry["missed"] == expected.counts[k, -1]
        recall = expected.counts[k, k] / expected.counts[k].sum()
        assert entry["recall_at_threshold"] == pytest.approx(recall)
        column = expected.counts[:, k].sum()
        assert entry["precision_at_threshold"] == (pytest.approx(expected.counts[k, k] / column) if column else None)
        assert entry["confused_with"] == expected.confused_with(k)
    assert "Per-class diagnosis at score > 0.5, IoU > 0.5 (confusion_matrix.csv):" in out.splitlines()


@pytest.mark.timeout(180)  # a worker deadlock must fail, not hang the suite
def test_eval_coco_metric_prints_the_three_figures(synthetic_voc, tmp_path, capsys):
    from vision.cli.eval_ssd import main

    weights = _saved_weights(tmp_path, "mb1-ssd", 6)
    main(["--net", "mb1-ssd", "--trained_model", str(weights), "--dataset", str(synthetic_voc),
          "--eval_dir", str(tmp_path / "eval"), "--metric", "coco", "--num_workers", "0", "--device", "cpu"])
    out = capsys.readouterr().out
    per_class, mean_ap = _parse_printout(out)
    figures = dict(line.rsplit(": ", 1) for line in out.splitlines() if line.startswith("COCO"))
    figures = {name: float(value) for name, value in figures.items()}
    assert set(figures) == {"COCO mAP@[.5:.95]", "COCO mAP@.5", "COCO mAP@.75"}
    assert figures["COCO mAP@[.5:.95]"] == pytest.approx(mean_ap)
    assert mean_ap == pytest.approx(np.mean(list(per_class.values())))
    assert 0.0 <= figures["COCO mAP@.75"] <= figures["COCO mAP@.5"] <= 1.0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["coco"]["mAP@.5"] == pytest.approx(figures["COCO mAP@.5"])
    assert (summary["batch_size"], summary["num_workers"]) == (4, 0)  # the CPU defaults


@pytest.mark.timeout(300)
def test_eval_script_on_the_genuine_voc_sample(tmp_path, voc_sample_dir):
    weights = _saved_weights(tmp_path, "mb1-ssd", 21)
    eval_dir = tmp_path / "eval"
    completed = subprocess.run(
        [sys.executable, str(REPO / "eval_ssd.py"), "--net", "mb1-ssd", "--trained_model", str(weights),
         "--dataset_type", "voc", "--dataset", str(voc_sample_dir), "--label_file", str(VOC_LABELS),
         "--eval_dir", str(eval_dir), "--use_2007_metric", "false", "--use_cuda", "no", "--num_workers", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    per_class, mean_ap = _parse_printout(completed.stdout)
    assert list(per_class) == VOC_LABELS.read_text().split()[1:]

    ground_truth = _xml_ground_truth(voc_sample_dir, "test")
    positives = Counter({name: sum(int((~flags).sum()) for flags in ground_truth[name][1].values())
                         for name in ground_truth})
    # Classes without (non-difficult) ground truth in the split print nan and stay out of the mean.
    absent = {name for name in per_class if positives[name] == 0}
    assert absent and absent == {name for name, ap in per_class.items() if math.isnan(ap)}
    assert f"{sorted(absent)[0]}: nan (no ground truth)" in completed.stdout
    assert mean_ap == pytest.approx(np.mean([ap for ap in per_class.values() if not math.isnan(ap)]))

    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["num_images"] == 22 and summary["use_2007_metric"] is False
    assert summary["num_ground_truth"] == {name: positives[name] for name in per_class}
    for name in ("person", "cat"):
        detections = _parse_det_file(eval_dir / f"det_test_{name}.txt")
        detections = [(image_id, score, *(v - 1.0 for v in box)) for image_id, score, *box in detections]
        boxes, difficult = ground_truth[name]
        expected = voc_average_precision(boxes, difficult, detections, use_2007_metric=False)
        assert per_class[name] == pytest.approx(expected, abs=1e-6)


@pytest.mark.timeout(180)
def test_open_images_layout_is_scored_by_the_same_protocol(synthetic_voc, tmp_path, capsys):
    """The same images and boxes as an Open Images root (relative boxes in a CSV) give the same APs."""
    import shutil

    from vision.cli.eval_ssd import main

    root = tmp_path / "open_images"
    (root / "test").mkdir(parents=True)
    rows = ["ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,ClassName"]
    for image_id in (synthetic_voc / "ImageSets" / "Main" / "test.txt").read_text().split():
        shutil.copy(synthetic_voc / "JPEGImages" / f"{image_id}.jpg", root / "test" / f"{image_id}.jpg")
        tree = ElementTree.parse(synthetic_voc / "Annotations" / f"{image_id}.xml")
        width, height = (float(tree.find("size").find(tag).text) for tag in ("width", "height"))
        for obj in tree.findall("object"):
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.find(tag).text) - 1.0 for tag in ("xmin", "ymin", "xmax", "ymax"))
            rows.append(f"{image_id},synthetic,/m/0,1,{x1 / width!r},{x2 / width!r},{y1 / height!r},"
                        f"{y2 / height!r},{obj.find('name').text}")
    (root / "sub-test-annotations-bbox.csv").write_text("\n".join(rows) + "\n")
    (root / "sub-train-annotations-bbox.csv").write_text("\n".join(rows) + "\n")

    weights = _saved_weights(tmp_path, "mb1-ssd", 6)
    label_file = tmp_path / "labels.txt"
    label_file.write_text("BACKGROUND\ncircle\nsquare\ntriangle\nstar\nring\n")
    results = []
    for dataset_type, dataset in (("voc", synthetic_voc), ("open_images", root)):
        main(["--net", "mb1-ssd", "--trained_model", str(weights), "--dataset_type", dataset_type,
              "--dataset", str(dataset), "--label_file", str(label_file), "--eval_dir", str(tmp_path / dataset_type),
              "--use_cuda", "false"])
        results.append(_parse_printout(capsys.readouterr().out))
    (voc_classes, voc_mean), (open_classes, open_mean) = results
    assert list(open_classes) == list(voc_classes)
    assert max(voc_classes.values()) > 0  # some matches, so the comparison means something
    assert list(open_classes.values()) == pytest.approx(list(voc_classes.values()), abs=1e-6)
    assert open_mean == pytest.approx(voc_mean, abs=1e-6)
    assert (tmp_path / "open_images" / "det_test_circle.txt").read_text().split()[0] in \
        (root / "sub-test-annotations-bbox.csv").read_text()

"""vision.datasets.convert: round trips through every pair of formats, the genuine VOC sample, and refusals."""
import hashlib
import os
import warnings
from itertools import permutations

import numpy as np
import pytest
import torch

from tests.conftest import VOC_SAMPLE
from vision.cli.convert_dataset import main
from vision.datasets import BadDataWarning, DatasetError, build_dataset
from vision.datasets.convert import convert, load_images, read_contents

FORMATS = ("voc", "coco", "yolo", "csv")
YOLO_TOLERANCE = 0.5  # pixels: what the issue allows; the writer's 9 digits keep far below it


def _loaded(root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadDataWarning)
        contents = read_contents(root)
        return contents, load_images(contents)


def _assert_same_data_set(first, second, through_yolo):
    (contents_a, images_a), (contents_b, images_b) = _loaded(first), _loaded(second)
    assert contents_a.class_names == contents_b.class_names
    assert contents_a.splits == contents_b.splits
    assert list(images_a) == list(images_b)
    for image_id, image in images_a.items():
        other = images_b[image_id]
        assert image.size == other.size
        assert image.path.read_bytes() == other.path.read_bytes()  # never re-encoded
        np.testing.assert_array_equal(image.labels, other.labels)
        if through_yolo:
            np.testing.assert_allclose(image.boxes, other.boxes, rtol=0, atol=YOLO_TOLERANCE)
            assert not other.is_difficult.any()
        else:
            np.testing.assert_array_equal(image.boxes, other.boxes)
            np.testing.assert_array_equal(image.is_difficult, other.is_difficult)


@pytest.mark.parametrize("source_format, target_format", list(permutations(FORMATS, 2)))
def test_round_trip_through_every_pair_of_formats(format_roots, tmp_path, source_format, target_format):
    there, back = tmp_path / target_format, tmp_path / "back"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadDataWarning)
        convert(format_roots[source_format], there, target_format)
        convert(there, back, source_format)
    through_yolo = "yolo" in (source_format, target_format)
    _assert_same_data_set(format_roots[source_format], there, through_yolo)
    _assert_same_data_set(format_roots[source_format], back, through_yolo)


def test_yolo_conversion_warns_and_lists_the_flagged_boxes(format_roots, tmp_path):
    with pytest.warns(BadDataWarning, match=r"3 flagged box\(es\) are written as ordinary ones") as records:
        summary = convert(format_roots["voc"], tmp_path / "yolo", "yolo")
    assert len(summary.flags_dropped) == 3
    message = " ".join(str(record.message) for record in records)
    for listed in ("a: square [34.0, 9.0, 59.0, 44.0]", "e: circle", "t1: triangle"):
        assert listed in message


def test_images_are_hard_linked_or_copied_when_asked(format_roots, tmp_path):
    convert(format_roots["voc"], tmp_path / "linked", "coco")
    convert(format_roots["voc"], tmp_path / "copied", "coco", copy=True)
    original = format_roots["voc"] / "JPEGImages" / "a.jpg"
    assert os.path.samefile(original, tmp_path / "linked" / "images" / "a.jpg")
    copied = tmp_path / "copied" / "images" / "a.jpg"
    assert not os.path.samefile(original, copied) and copied.read_bytes() == original.read_bytes()


def test_conversion_refuses_a_non_empty_destination_and_unknown_classes(format_roots, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="already exists and is not an empty folder"):
        convert(format_roots["voc"], tmp_path / "full", "csv")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    bad = tmp_path / "bad.csv"
    (tmp_path / "labels.txt").write_text("dog\n")
    bad.write_text("image,xmin,ymin,xmax,ymax,label\nx.jpg,1,1,5,5,cat\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:2: 'cat'"):
        convert(bad, tmp_path / "out", "voc")
    assert not (tmp_path / "out").exists()


def test_convert_script_reports_errors_in_one_line(format_roots, tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), str(tmp_path / "out"), "--to", "voc"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "nothing" in error[0]
    assert main([str(format_roots["csv"]), str(tmp_path / "voc"), "--to", "voc"]) == 0
    assert "wrote 9 images and 10 boxes from csv" in capsys.readouterr().out


# --- the genuine VOC sample -------------------------------------------------------------------------------

class GroundTruthPredictor:
    """Detections made from the VOC ground truth of each image (found by the image's bytes), jittered and
    with a stray box: the same for every format, and high but not perfect APs."""

    def __init__(self, dataset):
        self.outputs = {}
        rng = np.random.default_rng(0)
        for index in range(len(dataset)):
            _, (boxes, labels, _) = dataset.get_annotation(index)
            image = dataset.get_image(index)
            boxes = np.concatenate([boxes + rng.normal(0, 4, boxes.shape), [[0, 0, 40, 40]]]).astype(np.float32)
            labels = np.concatenate([labels, [15]])
            scores = rng.uniform(0.1, 1, len(labels)).astype(np.float32)
            self.outputs[hashlib.sha1(image.tobytes()).hexdigest()] = (boxes, labels, scores)

    def predict_batch(self, images, top_k=-1, prob_threshold=None):
        return [tuple(torch.from_numpy(array) for array in self.outputs[hashlib.sha1(image.tobytes()).hexdigest()])
                for image in images]


@pytest.mark.skipif(not VOC_SAMPLE.is_dir(), reason=f"the genuine VOC sample is not at {VOC_SAMPLE} (SSD_SHARED_DIR)")
def test_genuine_voc_sample_through_coco_and_csv_evaluates_the_same_and_through_yolo_only_difficult_differ(tmp_path):
    from vision.evaluation import evaluate

    reference, names = build_dataset("voc", [VOC_SAMPLE], is_test=True)
    predictor = GroundTruthPredictor(reference)

    def ap(dataset):
        result = evaluate(predictor, dataset, names, num_workers=0, progress=False)
        return [value for value in result.per_class_ap]

    expected = ap(reference)
    assert 0.5 < np.nanmean(expected) < 1
    for target in ("coco", "csv", "yolo"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadDataWarning)
            convert(VOC_SAMPLE, tmp_path / target, target)
            convert(tmp_path / target, tmp_path / f"{target}-voc", "voc")
        through_yolo = target == "yolo"
        _assert_same_data_set(VOC_SAMPLE, tmp_path / target, through_yolo)
        _assert_same_data_set(VOC_SAMPLE, tmp_path / f"{target}-voc", through_yolo)
        for root in (tmp_path / target, tmp_path / f"{target}-voc"):
            dataset, converted_names = build_dataset("auto", [root], is_test=True)
            assert converted_names == names and dataset.ids == reference.ids
            if not through_yolo:
                np.testing.assert_array_equal(ap(dataset), expected)
                continue
            # Through YOLO the 10 difficult test boxes become ordinary ones, and nothing else changes.
            flagged = 0
            for index in range(len(reference)):
                _, (boxes, labels, difficult) = reference.get_annotation(index)
                _, (other_boxes, other_labels, other_difficult) = dataset.get_annotation(index)
                np.testing.assert_allclose(other_boxes, boxes, atol=YOLO_TOLERANCE)
                np.testing.assert_array_equal(other_labels, labels)
                assert not other_difficult.any()
                flagged += int(difficult.sum())
            assert flagged == 10
            changed = [k for k, (a, b) in enumerate(zip(expected, ap(dataset))) if not (a == b or a != a and b != b)]
            difficult_classes = {int(label) - 1 for index in range(len(reference))
                                 for label, flag in zip(*reference.get_annotation(index)[1][1:]) if flag}
            assert changed and set(changed) <= difficult_classes

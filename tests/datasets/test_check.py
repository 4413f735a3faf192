"""vision.datasets.check: each planted defect is found with its file; counts, the prior coverage per class
and its report file, the figure, exit codes."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.datasets.conftest import VOCRootBuilder, voc_object, voc_xml, write_jpeg
from vision.cli.check_dataset import main
from vision.datasets.boxes import relative_boxes
from vision.datasets.check import check_dataset, write_figure
from vision.datasets.factory import build_dataset
from vision.datasets.synthetic import MIXED_SIZES, generate_voc_dataset
from vision.ssd.prior_choice import choose_priors


def _check(root):
    return check_dataset(root)


@pytest.fixture
def defective_voc(tmp_path):
    builder = VOCRootBuilder(tmp_path / "voc").labels("dog\ncat\n")
    builder.add("good", voc_xml([voc_object("dog", (2, 2, 30, 30)), voc_object("cat", (33, 5, 60, 40))]))
    builder.add("empty", voc_xml([]))
    builder.add("truncated", voc_xml([voc_object("dog", (2, 2, 30, 30))]))
    jpeg = (builder.root / "JPEGImages" / "truncated.jpg").read_bytes()
    (builder.root / "JPEGImages" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    builder.add("corrupt", voc_xml([voc_object("dog", (2, 2, 30, 30))]))
    (builder.root / "JPEGImages" / "corrupt.jpg").write_bytes(b"not an image at all")
    builder.add("missing", voc_xml([voc_object("dog", (2, 2, 30, 30))]), with_image=False)
    builder.add("outside", voc_xml([voc_object("dog", (100, 100, 120, 120)), voc_object("cat", (50, 30, 90, 60))],
                                   width=200, height=200))
    builder.add("flat", voc_xml([voc_object("dog", (10, 10, 10, 30)), voc_object("cat", (20, 5, 8, 30))]))
    builder.add("twice", voc_xml([voc_object("dog", (5, 5, 40, 40)), voc_object("dog", (5, 5, 40, 41))]))
    builder.add("unicorn", voc_xml([voc_object("unicorn", (5, 5, 40, 40))]))
    builder.add("broken", "<annotation><object>")
    builder.add("orphan", voc_xml([]), with_image=False)  # listed nowhere, and no image
    write_jpeg(builder.root / "JPEGImages" / "unlabelled.jpg")
    builder.split("trainval", ["good", "empty", "truncated", "corrupt", "missing", "outside", "flat", "twice",
                               "unicorn", "broken"])
    builder.split("test", ["good"])
    return builder.root


def _problems(report, text):
    return [problem for problem in report.problems if text in problem.message]


def test_every_planted_defect_is_found_with_its_file(defective_voc):
    report = _check(defective_voc)
    found = {
        "truncated JPEG": ("truncated.jpg", True),
        "cannot be decoded": ("corrupt.jpg", True),
        "cannot read image": ("missing.jpg", True),
        "outside the 64x48 image, dropped": ("outside.xml", True),
        "reach outside the 64x48 image, clipped": ("outside.xml", False),
        "zero or negative area": ("flat.xml", True),
        "duplicate box": ("twice.xml", False),
        "unknown class": ("unicorn.xml", True),
        "malformed annotation": ("broken.xml", True),
        "annotation without an image": ("orphan.xml", False),
        "image without an annotation file": ("unlabelled", False),
        "says the image is 200x200": ("outside.xml", False),
    }
    for text, (file_name, skipped) in found.items():
        matches = _problems(report, text)
        assert matches, f"no problem {text!r} in {report.problems}"
        assert any(file_name in problem.path and problem.skipped == skipped for problem in matches), (text, matches)
    assert len(_problems(report, "zero or negative area")[0].message.split(";")) == 2  # both flat boxes listed
    assert not [problem for problem in report.problems if "good" in problem.path or "empty" in problem.path]
    assert report.has_skipped


def test_counts_and_exit_codes(defective_voc, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(defective_voc)]) == 1
    out = capsys.readouterr().out
    assert "images per split: test 1, trainval 10" in out
    # empty, and flat (both its boxes dropped); not the unreadable ones, nor unicorn (training stops there)
    assert "images without boxes: 2" in out
    counts = out.split("boxes per class:")[1].split("images without boxes")[0]
    dog, cat = [line.split() for line in counts.splitlines() if line.strip()]
    # dog: good, twice (both: a duplicate is a warning, not dropped); cat: good, outside's clipped one
    assert (dog[1], cat[1]) == ("3", "2")
    assert (tmp_path / "dataset_report.png").stat().st_size > 10_000

    clean = VOCRootBuilder(tmp_path / "clean").labels("dog\n")
    clean.add("a", voc_xml([voc_object("dog", (2, 2, 30, 30))])).split("trainval", ["a"])
    report_path = tmp_path / "clean.png"
    assert main([str(clean.root), "--report", str(report_path)]) == 0
    assert "problems: 0" in capsys.readouterr().out and report_path.is_file()


def test_boxes_are_kept_relative_to_their_image_with_the_training_split_marked(tmp_path):
    builder = VOCRootBuilder(tmp_path / "voc").labels("dog\n")
    # VOC's XML is 1-based: (1, 1, 10, 10) is the 0-based box (0, 0, 9, 9) of a 64x48 image.
    builder.add("a", voc_xml([voc_object("dog", (1, 1, 10, 10)), voc_object("dog", (21, 1, 50, 30))]))
    builder.add("b", voc_xml([voc_object("dog", (33, 25, 64, 48))]))
    builder.split("trainval", ["a"]).split("test", ["b"])
    report = _check(builder.root)
    boxes, labels = report.training_boxes()
    np.testing.assert_allclose(sorted(boxes.tolist()), [[0, 0, 9 / 64, 9 / 48], [20 / 64, 0, 49 / 64, 29 / 48]])
    test_box = report.relative_boxes[~report.in_training]
    np.testing.assert_allclose(test_box, [[32 / 64, 24 / 48, 63 / 64, 47 / 48]])
    assert labels.tolist() == [1, 1]


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """The synthetic set with a small class (circles) that the net types' own priors cannot cover."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    generate_voc_dataset(root, num_images=40, num_test=4, seed=3, **MIXED_SIZES)
    return root


def test_the_coverage_is_printed_and_written_beside_the_figure(mixed_sizes, tmp_path, capsys):
    report = tmp_path / "out" / "dataset_report.png"
    assert main([str(mixed_sizes), "--net", "mb2-ssd-lite", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "prior coverage (mb2-ssd-lite at 300x300, mb2-ssd-lite's own priors" in out
    coverage = out.split("prior coverage (")[1]
    circle = next(line for line in coverage.splitlines() if line.strip().startswith("circle "))
    assert circle.split()[2] == "0.0%" and "below 0.95" in circle
    assert "advice: class 'circle': only 0.0%" in out and "fix: --priors auto --resolution" in out
    assert "smaller than the smallest prior" not in out
    document = json.loads((tmp_path / "out" / "dataset_report.json").read_text())
    assert document["net"] == "mb2-ssd-lite" and document["image_size"] == [300, 300]
    assert document["priors"] is None and document["match_iou_threshold"] == 0.5
    assert set(document["prior_coverage"]) == {"circle", "square", "triangle"}
    assert document["prior_coverage"]["circle"] == 0.0 and document["prior_coverage"]["triangle"] > 0.9
    assert 0 < document["median_best_iou"]["circle"] < 0.5
    assert sorted(path.name for path in report.parent.iterdir()) == ["dataset_report.json", "dataset_report.png"]


def test_priors_auto_previews_the_fit_and_writes_the_table(mixed_sizes, tmp_path, capsys):
    report = tmp_path / "r.png"
    assert main([str(mixed_sizes), "--net", "mb2-ssd-lite", "--resolution", "512", "--priors", "auto",
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "the net type's priors" in out and "priors fitted to the data" in out
    document = json.loads(report.with_suffix(".json").read_text())
    assert document["before_fit"]["prior_coverage"]["circle"] == 0.0
    assert document["prior_coverage"]["circle"] > 0.9
    table = json.loads((tmp_path / "r_priors.json").read_text())
    assert table == document["priors"] and table["fitted_at"] == [512, 512]
    assert [len(level) for level in table["maps"]] == [6] * 6  # mb2-ssd-lite's priors per location


def test_the_coverage_is_measured_on_the_boxes_training_uses(tmp_path, capsys):
    """A difficult box (which training leaves out) does not count: the checker prints and writes the very
    table that train_ssd.py prints, choose_priors on relative_boxes of the training data set."""
    builder = VOCRootBuilder(tmp_path / "voc").labels("dog\ndot\n")
    # dot: one small box no prior covers, and a large one marked difficult that would count as covered.
    builder.add("a", voc_xml([voc_object("dog", (2, 2, 60, 46)), voc_object("dot", (30, 20, 35, 25), 0)]))
    builder.add("b", voc_xml([voc_object("dog", (5, 3, 55, 40)), voc_object("dot", (1, 1, 64, 48), 1)]))
    builder.add("t", voc_xml([voc_object("dot", (1, 1, 64, 48))]))
    builder.split("trainval", ["a", "b"]).split("test", ["t"])
    report_path = tmp_path / "r.png"
    assert main([str(builder.root), "--net", "mb1-ssd-lite", "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    dataset, class_names = build_dataset("voc", [str(builder.root)])
    boxes, labels = relative_boxes(dataset)
    training = choose_priors("default", "mb1-ssd-lite", None, boxes, labels, class_names).coverage
    assert training.boxes == {"dog": 2, "dot": 1} and training.covered["dot"] == 0.0
    assert "\n".join(training.lines()) in out
    document = json.loads(report_path.with_suffix(".json").read_text())
    expected = training.to_document()
    assert {key: document[key] for key in expected} == expected
    checked, checked_labels = check_dataset(builder.root).training_boxes()
    np.testing.assert_array_equal(checked, boxes)
    np.testing.assert_array_equal(checked_labels, labels)


def test_yolo_defects_class_out_of_range_and_missing_or_orphan_label_files(tmp_path):
    root = tmp_path / "yolo"
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text("train: images/train\nnames: [dog]\n")
    for name in ("a", "b"):
        write_jpeg(root / "images" / "train" / f"{name}.jpg")
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n4 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    report = _check(root)
    assert any("a.txt:2" in problem.path + problem.message and problem.skipped for problem in
               _problems(report, "unknown class"))
    assert _problems(report, "image without a label file")[0].path.endswith("b.jpg")
    assert _problems(report, "label file without an image")[0].path.endswith("ghost.txt")


def test_file_level_problem_is_one_line_and_exit_1(tmp_path, capsys):
    (tmp_path / "data.yaml").write_text("names: [dog\n")
    assert main([str(tmp_path), "--report", str(tmp_path / "r.png")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "data.yaml: malformed YAML" in error[0]


def test_figure_is_a_png_under_its_name_with_no_temporary_left(defective_voc, tmp_path):
    path = write_figure(_check(defective_voc), tmp_path / "figures" / "report.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(item.name for item in path.parent.iterdir()) == ["report.png"]


def test_the_library_does_not_import_the_net_layer():
    code = ("import sys, vision.datasets.check, vision.datasets.convert, vision.datasets.synthetic; "
            "print(sorted(name for name in sys.modules if name.startswith(('vision.ssd', 'vision.cli'))))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"

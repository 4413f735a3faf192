"""vision.datasets.check: each planted defect is found with its file; counts, small boxes, figure, exit code."""
import functools
import subprocess
import sys

import numpy as np
import pytest

from tests.datasets.conftest import VOCRootBuilder, voc_object, voc_xml, write_jpeg
from vision.cli.check_dataset import main, net_priors
from vision.datasets.check import NetPriors, check_dataset, format_report, write_figure
from vision.utils.image_size import parse_resolution


def _check(root, net="mb1-ssd-lite", resolution=None):
    """check_dataset as the command calls it: the net's priors at `resolution`, and at other sizes for the advice."""
    priors = net_priors(net, parse_resolution(resolution) if resolution else None)
    return check_dataset(root, priors, priors_at=functools.partial(net_priors, net))


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
    dog, cat = [line.split() for line in out.splitlines() if line.strip().startswith(("dog ", "cat "))]
    # dog: good, twice (both: a duplicate is a warning, not dropped); cat: good, outside's clipped one
    assert (dog[1], cat[1]) == ("3", "2")
    assert (tmp_path / "dataset_report.png").stat().st_size > 10_000

    clean = VOCRootBuilder(tmp_path / "clean").labels("dog\n")
    clean.add("a", voc_xml([voc_object("dog", (2, 2, 30, 30))])).split("trainval", ["a"])
    report_path = tmp_path / "clean.png"
    assert main([str(clean.root), "--report", str(report_path)]) == 0
    assert "problems: 0" in capsys.readouterr().out and report_path.is_file()


def test_small_boxes_are_counted_against_the_smallest_prior(tmp_path):
    builder = VOCRootBuilder(tmp_path / "voc").labels("dog\n")
    # 64x48 images: at 300x300 a 9x9 box becomes 42x56 (sqrt 49 < mb1-ssd-lite's 60), a 29x29 one 136x181.
    builder.add("a", voc_xml([voc_object("dog", (1, 1, 10, 10)), voc_object("dog", (11, 11, 20, 20)),
                              voc_object("dog", (21, 1, 50, 30))]))
    builder.split("trainval", ["a"])
    report = _check(builder.root, net="mb1-ssd-lite")
    assert report.smallest_prior == pytest.approx(60, abs=0.5) and report.num_small_boxes == 2
    text = format_report(report)
    assert "2 of 3 boxes are smaller than the smallest prior of mb1-ssd-lite at 300x300" in text
    # The priors grow with the input, so no size helps these (the advice says so, and what else does).
    assert "Raising --resolution alone does not help here" in text and "600x600" in text
    larger = _check(builder.root, net="mb1-ssd-lite", resolution="600")
    assert larger.input_size == (600, 600) and larger.smallest_prior == pytest.approx(120, abs=1)
    assert larger.num_small_boxes == 2
    np.testing.assert_allclose(larger.box_sizes, report.box_sizes * 2)


def test_wide_images_get_the_advice_of_a_wider_resolution(tmp_path):
    builder = VOCRootBuilder(tmp_path / "voc").labels("dog\n")
    # 128x48: a 14x14 box is 33x88 at 300x300 (sqrt 54, small) but 88x88 at 800x300.
    builder.add("a", voc_xml([voc_object("dog", (1, 1, 15, 15)), voc_object("dog", (31, 1, 75, 45))],
                             width=128, height=48), width=128, height=48)
    builder.split("trainval", ["a"])
    report = _check(builder.root, net="mb1-ssd-lite")
    assert report.num_small_boxes == 1
    assert "raise --resolution to 800x300 (0 small boxes there, 1 at 300x300)" in report.advice


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


def test_priors_come_from_the_caller_and_without_priors_at_there_is_no_advice(tmp_path):
    builder = VOCRootBuilder(tmp_path / "voc").labels("dog\n")
    builder.add("a", voc_xml([voc_object("dog", (1, 1, 10, 10)), voc_object("dog", (21, 1, 50, 30))]))
    builder.split("trainval", ["a"])
    # One prior, 100x50 pixels at a 200x100 input: sqrt(5000) = 70.7 pixels.
    priors = NetPriors("toy", (200, 100), np.array([[0.5, 0.5, 0.5, 0.5]]))
    report = check_dataset(builder.root, priors)
    assert report.input_size == (200, 100) and report.net == "toy"
    np.testing.assert_allclose(report.prior_sizes, [[100, 50]])
    assert report.smallest_prior == pytest.approx(np.sqrt(5000))
    assert report.num_small_boxes == 1 and report.advice == ""  # 9x9 -> 28x19 is small; 29x29 -> 91x60 is not
    asked = []
    report = check_dataset(builder.root, priors, priors_at=lambda size: asked.append(size) or priors)
    assert (400, 200) in asked  # twice the input size is always a candidate
    assert report.advice.startswith("advice: 50 % of the boxes are smaller than the smallest prior")


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

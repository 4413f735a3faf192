"""vision.datasets.check: each planted defect is found with its file; counts, small boxes, figure, exit code."""
import numpy as np
import pytest

from tests.datasets.conftest import VOCRootBuilder, voc_object, voc_xml, write_jpeg
from vision.datasets.check import check_dataset, format_report, main


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
    report = check_dataset(defective_voc)
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
    report = check_dataset(builder.root, net="mb1-ssd-lite")
    assert report.smallest_prior == pytest.approx(60, abs=0.5) and report.num_small_boxes == 2
    text = format_report(report)
    assert "2 of 3 boxes are smaller than the smallest prior of mb1-ssd-lite at 300x300" in text
    # The priors grow with the input, so no size helps these (the advice says so, and what else does).
    assert "Raising --resolution alone does not help here" in text and "600x600" in text
    larger = check_dataset(builder.root, net="mb1-ssd-lite", resolution="600")
    assert larger.input_size == (600, 600) and larger.smallest_prior == pytest.approx(120, abs=1)
    assert larger.num_small_boxes == 2
    np.testing.assert_allclose(larger.box_sizes, report.box_sizes * 2)


def test_wide_images_get_the_advice_of_a_wider_resolution(tmp_path):
    builder = VOCRootBuilder(tmp_path / "voc").labels("dog\n")
    # 128x48: a 14x14 box is 33x88 at 300x300 (sqrt 54, small) but 88x88 at 800x300.
    builder.add("a", voc_xml([voc_object("dog", (1, 1, 15, 15)), voc_object("dog", (31, 1, 75, 45))],
                             width=128, height=48), width=128, height=48)
    builder.split("trainval", ["a"])
    report = check_dataset(builder.root, net="mb1-ssd-lite")
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
    report = check_dataset(root)
    assert any("a.txt:2" in problem.path + problem.message and problem.skipped for problem in
               _problems(report, "unknown class"))
    assert _problems(report, "image without a label file")[0].path.endswith("b.jpg")
    assert _problems(report, "label file without an image")[0].path.endswith("ghost.txt")


def test_file_level_problem_is_one_line_and_exit_1(tmp_path, capsys):
    (tmp_path / "data.yaml").write_text("names: [dog\n")
    assert main([str(tmp_path), "--report", str(tmp_path / "r.png")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "data.yaml: malformed YAML" in error[0]

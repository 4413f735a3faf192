"""The data commands (the synthetic generator, convert, check, and train_ssd.py reading a data set) under a new
user's mistakes (issue 21): exit status, the one-line message, no traceback, nothing the user had changed,
no temporary file left. Also what users expect: --balance_data in every format, Open Images read as a
source, YOLO segmentation polygons used as boxes."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.cli.mistakes import error_lines, file_hashes, run_main, temporaries
from tests.datasets.conftest import VOCRootBuilder, voc_object, voc_xml, write_jpeg
from tests.datasets.test_open_images import row, write_split
from vision.cli import check_dataset, convert_dataset, synthetic_dataset, train_ssd
from vision.datasets.convert import convert, read_contents
from vision.datasets.synthetic import generate_voc_dataset

TRAIN = ["--net", "mb1-ssd-lite", "--resolution", "160", "--batch_size", "4", "--num_workers", "0", "--no_progress",
         "--seed", "0", "--num_epochs", "1"]


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    generate_voc_dataset(root, num_images=2, num_test=1, seed=2, width=96, height=72)
    return root


# -- 1: the generator into a folder that holds data ----------------------------------------------------
def test_the_generator_refuses_a_root_that_holds_data(voc, tmp_path, capsys):
    root = tmp_path / "mine"
    shutil.copytree(voc, root)
    before = file_hashes(root)
    code, out, err = run_main(synthetic_dataset.main, ["--root", root, "--num_images", "2", "--num_workers", "1"],
                              capsys)
    assert code == 1 and error_lines(err) == [f"error: {root}: already exists and is not an empty folder "
                                              "(nothing was written)"]
    assert file_hashes(root) == before and not temporaries(root) and out == ""


def test_the_generator_still_writes_into_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_main(synthetic_dataset.main, ["--root", tmp_path / "empty", "--num_images", "1",
                                                       "--num_test", "0", "--width", "32", "--height", "24",
                                                       "--num_workers", "1"], capsys)
    assert code == 0 and "wrote 1 trainval + 0 test images" in out


# -- 13: --min_size above --max_size ---------------------------------------------------------------------
def test_min_size_above_max_size_is_one_line_and_writes_nothing(tmp_path, capsys):
    code, out, err = run_main(synthetic_dataset.main, ["--root", tmp_path / "new", "--num_images", "2",
                                                       "--min_size", "0.6", "--max_size", "0.2"], capsys)
    (line,) = error_lines(err)
    assert code == 1 and "min_size" in line and "max_size" in line and "0.6, 0.2" in line
    assert not (tmp_path / "new").exists()


# -- 4: COCO categories that differ only in case --------------------------------------------------------
def _coco_with_case_twins(root: Path) -> Path:
    write_jpeg(root / "images" / "a.jpg", 64, 48)
    document = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20]},
                                {"id": 2, "image_id": 1, "category_id": 6, "bbox": [30, 10, 20, 20]}],
                "categories": [{"id": 1, "name": "circle"}, {"id": 6, "name": "Circle"}]}
    (root / "annotations.json").write_text(json.dumps(document))
    return root


def test_coco_categories_that_differ_only_in_case_are_rejected_naming_both_ids(tmp_path, capsys):
    root = _coco_with_case_twins(tmp_path / "coco")
    before = file_hashes(root)
    expected = "categories 'circle' (id 1) and 'Circle' (id 6) differ only in case"
    code, out, err = run_main(convert_dataset.main, [root, tmp_path / "voc", "--to", "voc"], capsys)
    (line,) = error_lines(err)
    assert code == 1 and expected in line and str(root / "annotations.json") in line
    assert not (tmp_path / "voc").exists()
    code, out, err = run_main(train_ssd.main, TRAIN + ["--datasets", root, "--checkpoint_folder", tmp_path / "m"],
                              capsys)
    (line,) = error_lines(err)
    assert code == 2 and expected in line and not (tmp_path / "m" / "labels.txt").exists()
    code, out, err = run_main(check_dataset.main, [root, "--report", tmp_path / "report.png"], capsys)
    (line,) = error_lines(err)  # a data set that cannot be read: 1, one line, nothing printed or written
    assert code == 1 and expected in line and str(root / "annotations.json") in line and out == ""
    assert not (tmp_path / "report.png").exists() and not (tmp_path / "report.json").exists()
    assert file_hashes(root) == before and not temporaries(tmp_path)


# -- 15: --balance_data in every format ---------------------------------------------------------------------
@pytest.mark.parametrize("data_format", ["voc", "coco", "yolo", "csv"])
def test_balance_data_applies_to_every_format(tmp_path, caplog, capsys, data_format):
    builder = VOCRootBuilder(tmp_path / "voc").labels("circle\nsquare\n")
    for image_id in ("c1", "c2", "c3"):
        builder.add(image_id, voc_xml([voc_object("circle", (5, 5, 30, 30))]), width=64, height=48)
    builder.add("s1", voc_xml([voc_object("square", (10, 10, 40, 40))]), width=64, height=48)
    builder.split("trainval", ["c1", "c2", "c3", "s1"])
    root = builder.root
    if data_format != "voc":  # the same four images, written as that format
        root = tmp_path / data_format
        convert(builder.root, root, to=data_format)
    before = file_hashes(root)
    with caplog.at_level(logging.INFO, logger="vision.datasets.factory"):
        code, out, err = run_main(train_ssd.main, TRAIN + ["--datasets", root, "--balance_data",
                                                           "--checkpoint_folder", tmp_path / "m"], capsys)
    assert code == 0, err
    messages = [record.getMessage() for record in caplog.records]
    assert f"Dataset {root}: detected format {data_format}" in messages
    assert f"Dataset {root}: --balance_data kept 2 of 4 images" in messages  # one circle, the one square
    assert file_hashes(root) == before and not temporaries(tmp_path)
    assert "images without boxes stay" in " ".join(train_ssd.build_parser().format_help().split())


# -- 21: bad-box messages ----------------------------------------------------------------------------------
def test_a_nan_coordinate_is_called_nan_and_boxes_are_shown_as_written(tmp_path, capsys, recwarn):
    builder = VOCRootBuilder(tmp_path / "voc").labels("circle\n")
    builder.add("a", voc_xml([voc_object("circle", (3, "nan", 30, 40)), voc_object("circle", (200, 10, 220, 40)),
                              voc_object("circle", (5, 5, 20, 20))], width=64, height=48), width=64, height=48)
    builder.split("trainval", ["a"])
    before = file_hashes(builder.root)
    code, out, err = run_main(train_ssd.main, TRAIN + ["--datasets", builder.root,
                                                       "--checkpoint_folder", tmp_path / "m"], capsys)
    assert code == 0, err
    (warning,) = [str(w.message) for w in recwarn if "dropped 2 box(es)" in str(w.message)]  # pytest takes them
    assert "circle [3, nan, 30, 40] (NaN)" in warning
    assert "circle [200, 10, 220, 40] (outside the image)" in warning  # as in the XML, not clipped to 64
    assert file_hashes(builder.root) == before and not temporaries(tmp_path)


# -- expected: Open Images read as a source ------------------------------------------------------------
def test_convert_reads_the_open_images_downloaders_folder(tmp_path, capsys):
    root = tmp_path / "oi"
    root.mkdir()
    write_split(root, "train", [row("img1", "Cat", 0.0, 0.5, 0.25, 0.75), row("img2", "Dog", 0.5, 1.0, 0.0, 0.5)],
                ["img1", "img2"])
    write_split(root, "test", [row("t1", "Dog", 0.0, 0.25, 0.0, 1.0)], ["t1"])
    before = file_hashes(root)
    code, out, err = run_main(convert_dataset.main, [root, tmp_path / "voc", "--to", "voc"], capsys)
    assert code == 0 and "wrote 3 images and 3 boxes from open_images" in out, err
    contents = read_contents(tmp_path / "voc", "voc")
    assert contents.class_names == ("BACKGROUND", "Cat", "Dog")
    assert contents.splits == {"test": ["t1"], "train": ["img1", "img2"]}
    np.testing.assert_allclose(contents.images["img1"].boxes, [[0, 10, 40, 30]])  # 80x40 images
    np.testing.assert_allclose(contents.images["t1"].boxes, [[0, 0, 20, 40]])
    assert file_hashes(root) == before and not temporaries(tmp_path)
    assert "open_images" in convert_dataset.build_parser().format_help()


# -- expected: YOLO segmentation polygons ---------------------------------------------------------------
def test_yolo_polygons_become_their_bounding_boxes_said_once(tmp_path, capsys):
    root = tmp_path / "yolo"
    for split, name, lines in (("train", "x", "0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n1 0.5 0.5 0.2 0.2\n"),
                               ("val", "y", "1 0.25 0.25 0.75 0.25 0.5 0.75\n")):
        write_jpeg(root / "images" / split / f"{name}.jpg", 64, 48)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / f"{name}.txt").write_text(lines)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": ["a", "b"], "train": "images/train",
                                                    "val": "images/val"}))
    before = file_hashes(root)
    code, out, err = run_main(convert_dataset.main, [root, tmp_path / "voc", "--to", "voc"], capsys)
    assert code == 0 and "wrote 2 images and 3 boxes" in out, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "2 label line(s) are segmentation polygons" in warnings[0]
    assert "used as its bounding box" in warnings[0]
    contents = read_contents(tmp_path / "voc", "voc")
    np.testing.assert_allclose(contents.images["x"].boxes, [[6.4, 9.6, 32, 28.8], [25.6, 19.2, 38.4, 28.8]],
                               atol=1e-4)
    np.testing.assert_allclose(contents.images["y"].boxes, [[16, 12, 48, 36]], atol=1e-4)
    assert file_hashes(root) == before and not temporaries(tmp_path)


# -- the checker: 11 (a report that cannot be written), 19 (the real path), 21, classes a split lacks ------
def _shapes_voc(root: Path) -> Path:
    """Two classes; the test split has no square, one trainval box has a NaN coordinate."""
    builder = VOCRootBuilder(root).labels("circle\nsquare\n")
    builder.add("a", voc_xml([voc_object("circle", (3, "nan", 30, 40)), voc_object("square", (10, 10, 40, 40))]))
    builder.add("b", voc_xml([voc_object("circle", (5, 5, 30, 30))]))
    builder.add("t", voc_xml([voc_object("circle", (4, 4, 20, 20))]))
    builder.split("trainval", ["a", "b"]).split("test", ["t"])
    return root


def test_check_calls_a_nan_coordinate_nan_and_warns_of_a_class_missing_from_a_split(tmp_path, capsys):
    root = _shapes_voc(tmp_path / "voc")
    before = file_hashes(root)
    code, out, err = run_main(check_dataset.main, [root, "--report", tmp_path / "out" / "report.png"], capsys)
    assert code == 1  # the NaN box is dropped by training
    assert f"error: {root / 'Annotations' / 'a.xml'}: image a: 1 box(es) with a NaN coordinate, dropped: circle " \
           "[3, nan, 30, 40]" in out
    assert "zero or negative area" not in out
    assert f"warning: {root}: split test: 1 class(es) without a box: square" in out
    assert "split trainval" not in out.split("problems:")[1]
    assert file_hashes(root) == before and not temporaries(tmp_path)


def test_check_report_without_an_extension_is_written_where_it_says(tmp_path, capsys):
    root = _shapes_voc(tmp_path / "voc")
    before = file_hashes(root)
    code, out, err = run_main(check_dataset.main, [root, "--report", tmp_path / "report_noext"], capsys)
    assert code == 1  # the NaN box: a problem in the data, not in the report
    assert f"report figure: {tmp_path / 'report_noext.png'}\n" in out
    assert (tmp_path / "report_noext.png").read_bytes()[:4] == b"\x89PNG"
    assert f"report data: {tmp_path / 'report_noext.json'}" in out and (tmp_path / "report_noext.json").is_file()
    assert not (tmp_path / "report_noext").exists()
    assert file_hashes(root) == before and not temporaries(tmp_path)


def test_check_report_that_cannot_be_written_is_exit_3_before_the_check(tmp_path, capsys):
    root = _shapes_voc(tmp_path / "voc")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, out, err = run_main(check_dataset.main, [root, "--report", notes / "report.png"], capsys)
    assert code == 3 and out == ""  # nothing read: it would be lost anyway
    assert error_lines(err) == [f"error: --report {notes / 'report.png'}: cannot be created, {notes} is a file, "
                                "not a folder"]
    assert notes.read_text() == "mine" and not temporaries(tmp_path)


def test_check_report_that_fails_after_the_check_is_exit_3_and_the_printout_stays(tmp_path, capsys):
    root = _shapes_voc(tmp_path / "voc")
    (tmp_path / "report.json").mkdir()  # where the report data goes
    code, out, err = run_main(check_dataset.main, [root, "--report", tmp_path / "report.png"], capsys)
    assert code == 3 and "boxes per class:" in out and f"report figure: {tmp_path / 'report.png'}" in out
    (line,) = error_lines(err)
    assert f"{tmp_path / 'report.json'}: is a folder" in line and "the report printed above was not saved" in line
    assert not temporaries(tmp_path)


def test_check_reads_the_open_images_downloaders_folder(tmp_path, capsys):
    root = tmp_path / "oi"
    root.mkdir()
    write_split(root, "train", [row("img1", "Cat", 0.0, 0.5, 0.25, 0.75), row("img2", "Dog", 0.5, 1.0, 0.0, 0.5)],
                ["img1", "img2"])
    before = file_hashes(root)
    code, out, err = run_main(check_dataset.main, [root, "--dataset_type", "open_images",
                                                   "--report", tmp_path / "report.png"], capsys)
    assert code == 0, out + err
    assert out.startswith(f"open_images data set {root}: 2 images, 2 classes")
    assert file_hashes(root) == before and not temporaries(tmp_path)

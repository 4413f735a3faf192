"""COCO, YOLO and CSV data sets: the same samples as VOC, their layouts, auto-detection and bad input."""
import json

import numpy as np
import pytest

from tests.datasets.conftest import write_jpeg
from vision.datasets import BadDataWarning, DatasetError, VOCDataset, build_dataset
from vision.datasets.coco import COCODataset
from vision.datasets.csv_dataset import CSVDataset
from vision.datasets.detect import detect_format
from vision.datasets.yolo import YOLODataset

# YOLO's normalised floats bring boxes back within this many pixels (9 significant digits written).
YOLO_TOLERANCE = 1e-3


def _samples(dataset):
    return [(dataset.get_annotation(i), dataset[i]) for i in range(len(dataset))]


@pytest.mark.parametrize("dataset_format", ["coco", "yolo", "csv"])
@pytest.mark.parametrize("is_test", [False, True])
def test_every_format_yields_the_same_samples_as_voc(format_roots, dataset_format, is_test):
    reference, reference_names = build_dataset("voc", [format_roots["voc"]], is_test=is_test)
    dataset, names = build_dataset("auto", [format_roots[dataset_format]], is_test=is_test)
    assert names == reference_names == ["BACKGROUND", "circle", "square", "triangle"]
    assert dataset.ids == reference.ids
    tolerance = YOLO_TOLERANCE if dataset_format == "yolo" else 0
    for (((image_id, (boxes, labels, difficult)), sample),
         ((ref_id, (ref_boxes, ref_labels, ref_difficult)), ref_sample)) in zip(_samples(dataset), _samples(reference)):
        assert image_id == ref_id and boxes.dtype == np.float32 and labels.dtype == np.int64
        np.testing.assert_allclose(boxes, ref_boxes, rtol=0, atol=tolerance)
        np.testing.assert_array_equal(labels, ref_labels)
        if dataset_format == "yolo":
            assert not difficult.any()  # YOLO has no flag: every box is ordinary
        else:
            np.testing.assert_array_equal(difficult, ref_difficult)
            np.testing.assert_array_equal(sample[1], ref_sample[1])  # difficult boxes left out alike
        np.testing.assert_array_equal(sample[0], ref_sample[0])


def test_auto_detection_of_each_layout_and_of_annotation_files(format_roots):
    for name, root in format_roots.items():
        assert detect_format(root) == name
    assert detect_format(format_roots["coco"] / "annotations" / "instances_test.json") == "coco"
    assert detect_format(format_roots["yolo"] / "data.yaml") == "yolo"
    assert detect_format(format_roots["csv"] / "test.csv") == "csv"


def test_undetectable_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=f"cannot tell the format of {tmp_path}"):
        detect_format(tmp_path)


def test_roots_of_different_formats_concatenate_when_their_classes_agree(format_roots, tmp_path):
    dataset, names = build_dataset("auto", [format_roots["coco"], format_roots["yolo"], format_roots["csv"]])
    assert len(dataset) == 18 and names[1:] == ["circle", "square", "triangle"]
    other = tmp_path / "other.csv"
    write_jpeg(tmp_path / "x.jpg")
    other.write_text("image,xmin,ymin,xmax,ymax,label\nx.jpg,1,1,9,9,dog\n")
    with pytest.raises(DatasetError, match="class lists of the dataset roots differ"):
        build_dataset("auto", [format_roots["voc"], other])


# --- COCO ---------------------------------------------------------------------------------------------

def _coco(images, annotations, categories):
    return {"images": images, "annotations": annotations, "categories": categories}


def test_coco_own_layout_splits_categories_crowd_and_background(tmp_path):
    """train2017/ + val2017/ beside annotations/; category ids 7 and 3 become labels 2 and 1; captions
    files are ignored; an image without annotations is background; iscrowd is difficult."""
    for split, name in (("train2017", "t.jpg"), ("val2017", "v.jpg"), ("val2017", "empty.jpg")):
        write_jpeg(tmp_path / split / name)
    categories = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(_coco(
        [{"id": 1, "file_name": "t.jpg", "width": 64, "height": 48}],
        [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 20], "iscrowd": 0}], categories)))
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(_coco(
        [{"id": 5, "file_name": "v.jpg", "width": 64, "height": 48},
         {"id": 6, "file_name": "empty.jpg", "width": 64, "height": 48}],
        [{"id": 2, "image_id": 5, "category_id": 3, "bbox": [1.5, 2, 30, 40], "iscrowd": 0},
         {"id": 3, "image_id": 5, "category_id": 7, "bbox": [30, 5, 20, 20], "iscrowd": 1}], categories)))
    (tmp_path / "annotations" / "captions_val2017.json").write_text("not even JSON")
    train = COCODataset(tmp_path)
    assert train.class_names == ("BACKGROUND", "cat", "dog") and train.ids == ["t"]
    np.testing.assert_array_equal(train.get_annotation(0)[1][0], [[2, 3, 12, 23]])
    assert train.get_annotation(0)[1][1].tolist() == [2]
    test = COCODataset(tmp_path, is_test=True)  # no test file: val
    assert test.ids == ["v", "empty"]
    _, (boxes, labels, crowd) = test.get_annotation(0)
    np.testing.assert_array_equal(boxes, [[1.5, 2, 31.5, 42], [30, 5, 50, 25]])
    assert labels.tolist() == [1, 2] and crowd.tolist() == [0, 1]
    assert test[0][2].tolist() == [1]  # the crowd box is not trained on
    assert test[1][1].shape == (0, 4)
    assert test.coco_ground_truth.image_ids == {"v": 5, "empty": 6}
    assert test.coco_ground_truth.category_ids == [None, 3, 7]


def test_lone_coco_json_is_the_whole_set_and_file_names_resolve_against_images(tmp_path):
    write_jpeg(tmp_path / "images" / "a.jpg")
    write_jpeg(tmp_path / "b.jpg")  # beside the JSON
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_coco([{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                                      {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48}],
                                     [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}],
                                     [{"id": 1, "name": "dog"}])))
    for root in (tmp_path, path):
        for is_test in (False, True):
            dataset = COCODataset(root, is_test=is_test)
            assert dataset.ids == ["a", "b"]
            assert dataset.image_path("a") == tmp_path / "images" / "a.jpg"
            assert dataset.image_path("b") == tmp_path / "b.jpg"
            assert dataset[0] is not None and dataset[1][2].tolist() == [1]


def test_coco_malformed_json_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "annotations").mkdir()
    path = tmp_path / "annotations" / "instances_train.json"
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match=f"{path}: malformed JSON"):
        COCODataset(tmp_path)


def test_coco_unknown_category_stops_naming_file_and_annotation(tmp_path):
    write_jpeg(tmp_path / "images" / "a.jpg")
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_coco([{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                                     [{"id": 41, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]}],
                                     [{"id": 1, "name": "dog"}])))
    with pytest.raises(DatasetError, match=r"annotations\.json: annotation id 41: category_id 9"):
        COCODataset(tmp_path)


def test_coco_negative_size_is_dropped_and_box_outside_clipped_with_warnings_naming_the_file(tmp_path):
    write_jpeg(tmp_path / "images" / "a.jpg")
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_coco([{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                                     [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, -5, 5]},
                                      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 30]},
                                      {"id": 3, "image_id": 1, "category_id": 1, "bbox": [80, 60, 5, 5]}],
                                     [{"id": 1, "name": "dog"}])))
    with pytest.warns(BadDataWarning, match=r"annotations\.json: dropped 2 box"):
        dataset = COCODataset(tmp_path)
    np.testing.assert_array_equal(dataset[0][1], [[50, 40, 64, 48]])


def test_missing_image_is_skipped_with_a_warning_in_every_format(format_roots, tmp_path):
    import shutil

    for name in ("coco", "yolo", "csv"):
        copy = tmp_path / name
        shutil.copytree(format_roots[name], copy)
        dataset = build_dataset(name, [copy], is_test=True)[0]
        dataset.image_path("t2").unlink()
        with pytest.warns(BadDataWarning, match="skipping image t2"):
            assert dataset[1] is None
        with pytest.warns(BadDataWarning, match="t2"):
            assert dataset.get_image(1) is None


# --- YOLO ---------------------------------------------------------------------------------------------

def _yolo_root(root, yaml_text, labels):
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(yaml_text)
    for relative, text in labels.items():
        write_jpeg(root / "images" / f"{relative}.jpg", 100, 50)
        if text is not None:
            (root / "labels" / f"{relative}.txt").parent.mkdir(parents=True, exist_ok=True)
            (root / "labels" / f"{relative}.txt").write_text(text)
    return root


def test_yolo_names_dict_label_files_and_background(tmp_path):
    root = _yolo_root(tmp_path / "y", "train: images/train\nval: images/val\nnames: {0: dog, 1: cat}\n",
                      {"train/a": "1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.2 0.2\n", "train/b": None, "train/c": "",
                       "val/v": "0 0.25 0.5 0.5 1.0\n"})
    train = YOLODataset(root)
    assert train.class_names == ("BACKGROUND", "dog", "cat") and train.ids == ["a", "b", "c"]
    _, (boxes, labels, _) = train.get_annotation(0)
    np.testing.assert_allclose(boxes, [[40, 15, 60, 35], [0, 0, 20, 10]], atol=1e-4)
    assert labels.tolist() == [2, 1]
    assert train[1][1].shape == (0, 4) and train[2][1].shape == (0, 4)  # missing and empty label file
    test = YOLODataset(root, is_test=True)
    np.testing.assert_allclose(test.get_annotation(0)[1][0], [[0, 0, 50, 50]], atol=1e-4)


def test_yolo_split_as_a_list_file(tmp_path):
    root = _yolo_root(tmp_path / "y", "train: train.txt\nval: train.txt\nnames: [dog]\n",
                      {"set/a": "0 0.5 0.5 0.2 0.2\n"})
    (root / "train.txt").write_text("./images/set/a.jpg\n")
    dataset = YOLODataset(root)
    assert dataset.ids == ["a"] and dataset[0][2].tolist() == [1]


def test_yolo_class_index_out_of_range_stops_naming_file_and_line(tmp_path):
    root = _yolo_root(tmp_path / "y", "train: images/train\nnames: [dog]\n",
                      {"train/a": "0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(DatasetError, match=r"labels/train/a\.txt:2: class index 3"):
        YOLODataset(root)


def test_yolo_malformed_yaml_and_missing_names_are_errors_naming_the_file(tmp_path):
    root = _yolo_root(tmp_path / "y", "train: [images/train\nnames: [dog]\n", {})
    with pytest.raises(DatasetError, match=r"data\.yaml: malformed YAML"):
        YOLODataset(root)
    (root / "data.yaml").write_text("train: images\n")
    with pytest.raises(DatasetError, match=r"data\.yaml: needs names"):
        YOLODataset(root)


def test_yolo_malformed_label_line_skips_the_image_with_a_warning(tmp_path):
    root = _yolo_root(tmp_path / "y", "train: images/train\nnames: [dog]\n",
                      {"train/a": "0 0.5 0.5\n", "train/b": "0 0.5 0.5 0.2 0.2\n"})
    with pytest.warns(BadDataWarning, match=r"a\.txt is malformed.*line 1 has 3 fields"):
        dataset = YOLODataset(root)
    with pytest.warns(BadDataWarning):
        assert dataset[0] is None
    assert dataset[1] is not None


def test_empty_split_is_an_error_naming_the_root_and_its_splits(tmp_path):
    root = _yolo_root(tmp_path / "y", "train: images/train\nval: images/val\nnames: [dog]\n",
                      {"train/a": "0 0.5 0.5 0.2 0.2\n"})
    (root / "images" / "val").mkdir()
    with pytest.raises(DatasetError, match=r"no images for evaluation.*val \(0 images\)"):
        YOLODataset(root, is_test=True)


# --- CSV ----------------------------------------------------------------------------------------------

def test_csv_split_and_difficult_columns_and_images_without_boxes(tmp_path):
    for name in ("a", "b", "c"):
        write_jpeg(tmp_path / "pics" / f"{name}.jpg")
    (tmp_path / "boxes.csv").write_text(
        "image,xmin,ymin,xmax,ymax,label,split,difficult\n"
        "pics/a.jpg,1,2,30,40,dog,train,0\n"
        "pics/a.jpg,5,5,9,9,cat,train,1\n"
        "pics/b.jpg,,,,,,train,\n"
        "pics/c.jpg,3,3,20,20,cat,test,0\n")
    train = CSVDataset(tmp_path)
    assert train.class_names == ("BACKGROUND", "cat", "dog") and train.ids == ["pics/a", "pics/b"]
    _, (boxes, labels, difficult) = train.get_annotation(0)
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40], [5, 5, 9, 9]])
    assert labels.tolist() == [2, 1] and difficult.tolist() == [0, 1]
    assert train[0][2].tolist() == [2] and train[1][1].shape == (0, 4)
    assert CSVDataset(tmp_path, is_test=True).ids == ["pics/c"]


def test_csv_one_file_per_split_and_labels_txt_order(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    write_jpeg(tmp_path / "v.jpg")
    (tmp_path / "labels.txt").write_text("dog\ncat\n")
    (tmp_path / "train.csv").write_text("image,xmin,ymin,xmax,ymax,label\na.jpg,1,1,9,9,cat\n")
    (tmp_path / "val.csv").write_text("image,xmin,ymin,xmax,ymax,label\nv.jpg,2,2,9,9,dog\n")
    assert CSVDataset(tmp_path)[0][2].tolist() == [2]
    assert CSVDataset(tmp_path, is_test=True).ids == ["v"]


@pytest.mark.parametrize("text, message", [
    ("image,xmin,ymin,xmax,label\na.jpg,1,1,9,dog\n", "needs the columns.*missing ymax"),
    ("image,xmin,ymin,xmax,ymax,label\na.jpg,1,1,9,9,dog\na.jpg,one,1,9,9,dog\n",
     r"boxes\.csv:3: xmin is not a number"),
    ("image,xmin,ymin,xmax,ymax,label\na.jpg,1,,9,9,dog\n", r"boxes\.csv:2: some coordinates are empty"),
])
def test_csv_bad_files_are_errors_naming_file_and_line(tmp_path, text, message):
    write_jpeg(tmp_path / "a.jpg")
    (tmp_path / "boxes.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        CSVDataset(tmp_path / "boxes.csv")


def test_csv_label_not_in_labels_txt_stops_naming_file_and_line(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    (tmp_path / "labels.txt").write_text("dog\n")
    (tmp_path / "boxes.csv").write_text("image,xmin,ymin,xmax,ymax,label\na.jpg,1,1,9,9,dog\na.jpg,1,1,9,9,cow\n")
    with pytest.raises(DatasetError, match=r"boxes\.csv:3: 'cow'"):
        CSVDataset(tmp_path)


def test_voc_folder_converted_splits_load_by_the_shared_rule(format_roots, tmp_path):
    """A VOC root whose lists are train2017.txt / val2017.txt (as a COCO conversion writes) still loads."""
    import shutil

    root = tmp_path / "voc"
    shutil.copytree(format_roots["voc"], root)
    folder = root / "ImageSets" / "Main"
    (folder / "trainval.txt").rename(folder / "train2017.txt")
    (folder / "test.txt").rename(folder / "val2017.txt")
    assert VOCDataset(root).ids == list("abcdef")
    assert VOCDataset(root, is_test=True).ids == ["t1", "t2", "t3"]


def test_train_script_reports_a_malformed_file_in_one_line(tmp_path, capsys):
    from vision.cli.train_ssd import main as train_main

    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train.json").write_text("{")
    status = train_main(["--datasets", str(tmp_path), "--net", "mb1-ssd-lite", "--use_cuda", "false",
                         "--checkpoint_folder", str(tmp_path / "models")])
    error = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(error) == 1
    assert "instances_train.json: malformed JSON" in error[0]


@pytest.mark.parametrize("dataset_format", ["coco", "yolo", "csv"])
def test_synthetic_generator_writes_each_format(tmp_path, dataset_format, capsys):
    from vision.cli.synthetic_dataset import main as synthetic_main

    root = tmp_path / dataset_format
    synthetic_main(["--root", str(root), "--format", dataset_format, "--num_images", "2", "--num_test", "1",
                    "--width", "80", "--height", "60", "--num_workers", "1"])
    assert f"({dataset_format})" in capsys.readouterr().out
    assert detect_format(root) == dataset_format
    assert [path.name for path in tmp_path.iterdir()] == [dataset_format]  # no temporary folder left behind
    train, names = build_dataset("auto", [root])
    assert len(train) == 2 and names[1:] == ["circle", "square", "triangle", "star", "ring"]
    assert len(build_dataset("auto", [root], is_test=True)[0]) == 1
